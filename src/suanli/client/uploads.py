"""Folders and files up to the artifact store: packed, named by content, sent only when the
server lacks them.

`pack_local` packs a folder once, hashing as it goes and keeping an archive of up to
KEEP_IN_MEMORY bytes to send as it is; a folder whose listing is unchanged since its last
packing is not read at all (`artifacts.packcache`). `send_packed` streams the archive (from
memory, or packed again as it is read: never on disk) with its SHA-256 announced, which the
server checks. `upload_path` is both, asking the server first (`HEAD`): content the tenant has
is never sent twice.
"""

from __future__ import annotations

import hashlib
import io
import queue
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..artifacts import PackedFile, pack, packcache
from .client import ApiError, Client

CHUNK = 1 << 20
KEEP_IN_MEMORY = 64 << 20  # an archive up to this size is packed once and sent from memory


class Hashing:
    """A write-only file that hashes and counts what passes through to `out`."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


class KeepSmall:
    """Discards what is written, but keeps it in memory while it is at most `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: bytearray | None = bytearray()

    def write(self, data: bytes) -> int:
        if self.kept is not None:
            if len(self.kept) + len(data) > self.limit:
                self.kept = None
            else:
                self.kept += data
        return len(data)

    def flush(self) -> None:
        pass


def pack_any(src: Path, out: IO[bytes]) -> list[PackedFile]:
    """A folder (git's ignore rules and .suanliignore apply) or one file, as a tar into `out`.
    The same input packs to the same bytes."""
    if src.is_dir():
        return pack(src, out)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file or folder")
    st = src.stat()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(src.name)
        info.size, info.mtime = st.st_size, int(st.st_mtime)
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        with open(src, "rb") as fh:
            tar.addfile(info, fh)
    return [PackedFile(src.name, st.st_size)]


def pack_path(src: Path, out: IO[bytes]) -> tuple[str, int]:
    """Pack `src` into `out`; its SHA-256 and size."""
    hashing = Hashing(out)
    pack_any(src, hashing)  # type: ignore[arg-type]
    return hashing.sha.hexdigest(), hashing.size


@dataclass
class Packed:
    """A folder or file packed: what it packs to, and the archive itself when small."""

    src: Path
    sha256: str
    size: int
    files: list[PackedFile] = field(repr=False)
    kept: bytes | None = field(default=None, repr=False)
    remembered: packcache.Fingerprint | None = field(default=None, repr=False)


def pack_local(src: Path, *, use_cache: bool = True) -> Packed:
    """Pack once (hashing), keeping a small archive in memory; a folder listed exactly as when
    it was last packed here is not read (its SHA-256 and size are remembered)."""
    fp = packcache.fingerprint(src) if src.is_dir() else None
    if fp is not None and use_cache and (hit := packcache.lookup(fp)) is not None:
        return Packed(src, hit[0], hit[1], fp.files, None, fp)
    keep = KeepSmall(KEEP_IN_MEMORY)
    hashing = Hashing(keep)  # type: ignore[arg-type]
    files = (pack_any(src, hashing) if fp is None  # type: ignore[arg-type]
             else pack(src, hashing, fp.entries))  # type: ignore[arg-type]
    sha, size = hashing.sha.hexdigest(), hashing.size
    if fp is not None:
        packcache.remember(fp, sha, size)
    return Packed(src, sha, size, files, bytes(keep.kept) if keep.kept is not None else None)


class PackReader:
    """`pack_any(src)` as a readable file: packed in a thread, ~1 MiB at a time, as it is read
    (never on disk, never whole in memory)."""

    def __init__(self, src: Path) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        self._buf = bytearray()
        self._pending = b""
        self._done = False
        self._stop = threading.Event()
        threading.Thread(target=self._produce, args=(src,), daemon=True).start()

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped

    def write(self, data: bytes) -> int:
        if not self._buf and len(data) >= CHUNK:
            self._put(bytes(data))
            return len(data)
        self._buf += data
        if len(self._buf) >= CHUNK:
            self._put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def flush(self) -> None:
        pass

    def _produce(self, src: Path) -> None:
        try:
            pack_any(src, self)  # type: ignore[arg-type]
            if self._buf:
                self._put(bytes(self._buf))
            self._put(None)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader
            try:
                self._put(exc)
            except _Stopped:
                pass

    def read(self, n: int = -1) -> bytes:
        if self._pending == b"" and not self._done and n != 0:
            item = self._queue.get()  # the usual case: hand over a whole chunk, uncopied
            if item is None:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                raise item
            if n < 0 or len(item) <= n:
                return item
            self._pending = item
        while not self._done and (n < 0 or len(self._pending) < n):
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._pending += item
        if n < 0:
            n = len(self._pending)
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def close(self) -> None:
        self._stop.set()


class _Stopped(Exception):
    pass


def send_packed(c: Client, p: Packed, *, kind: str, name: str) -> dict[str, Any]:
    """Upload the packed archive (from memory, or packed again as it streams; the server checks
    its SHA-256 and size). A 422 means the folder is no longer what was packed: the remembered
    packing is forgotten."""
    reader: Any = io.BytesIO(p.kept) if p.kept is not None else PackReader(p.src)
    try:
        return c.upload_artifact(reader, sha256=p.sha256, size=p.size, name=name, kind=kind)
    except ApiError as exc:
        if exc.status == 422 and p.remembered is not None:
            packcache.forget(p.remembered)
        raise
    finally:
        reader.close()


def upload_path(c: Client, src: Path, *, kind: str, name: str) -> dict[str, Any]:
    """Upload `src` packed (folder or file), unless the tenant has that content already (then
    nothing is transferred). Returns the artifact (`created`: whether it is new). Nothing is
    written locally. Should the folder change between packing and sending, the server refuses
    the bytes (not the announced ones) and it is packed and sent once more."""
    for attempt in (1, 2):
        p = pack_local(src, use_cache=attempt == 1)
        if c.artifact_exists(p.sha256):
            return {"sha256": p.sha256, "size_bytes": p.size, "kind": kind, "name": name,
                    "created": False}
        try:
            return send_packed(c, p, kind=kind, name=name)
        except ApiError as exc:
            if exc.status != 422 or attempt == 2:
                raise
    raise AssertionError("unreachable")
