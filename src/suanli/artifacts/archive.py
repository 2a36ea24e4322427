"""Work folders as tar archives: packed with git's ignore rules, unpacked without escaping.

`pack` walks a folder in sorted order, leaving out `.git/`, whatever `.gitignore` and
`.suanliignore` files (at any depth, git's own pattern semantics through pathspec) exclude, and
folders of downloaded outputs (marked with DOWNLOAD_MARKER); it writes a plain tar with owners
cleared: the same folder packs to the same bytes, so its SHA-256 names it and a second upload
transfers nothing.

`unpack` extracts only regular files, folders and links that stay inside the destination
(tarfile's `data` filter: no absolute paths, no `..`, no links out, no devices, no set-uid bits),
within a byte and member budget; anything else stops it with UnsafeArchive.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pathspec

from . import stagekit
from .stagekit import UnsafeArchive as UnsafeArchive  # re-exported

IGNORE_FILES = (".gitignore", ".suanliignore")
ALWAYS_LEFT_OUT = frozenset({".git", ".hg", ".svn"})
# A folder holding this file is left out with everything in it: `suanli job download` marks the
# outputs it unpacks, so outputs downloaded into a work folder do not go up with its next run.
DOWNLOAD_MARKER = ".suanli-outputs"
_CHUNK = 1 << 20
_SMALL = 256 << 10  # files up to this size go out as one write with their header
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True)
class PackedFile:
    path: str  # relative, with /
    size: int


def _spec(folder: Path) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        f = folder / name
        if f.is_file():
            lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def walk(root: str | os.PathLike[str]) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every folder, file and link `pack` keeps, sorted, parents
    first. Ignore files apply to their own folder and below, as in git."""
    base = os.fspath(root)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{root} is not a folder")

    def visit(folder: str, rel: str, specs: list[tuple[str, pathspec.GitIgnoreSpec]]
              ) -> Iterator[tuple[str, os.stat_result]]:
        own = _spec(Path(folder))
        if own is not None:
            specs = [*specs, (rel, own)]
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            return
        for entry in entries:
            name = entry.name
            if name in ALWAYS_LEFT_OUT:
                continue
            child_rel = f"{rel}/{name}" if rel else name
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if specs and _ignored(child_rel, is_dir, specs):
                continue
            if is_dir:
                if os.path.isfile(os.path.join(entry.path, DOWNLOAD_MARKER)):
                    continue
                yield child_rel, st
                yield from visit(entry.path, child_rel, specs)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield child_rel, st
            # sockets, fifos and devices are never packed

    yield from visit(base, "", [])


def _ignored(rel: str, is_dir: bool, specs: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
    ignored = False
    for prefix, spec in specs:
        sub = rel[len(prefix) + 1:] if prefix else rel
        result = spec.check_file(sub + ("/" if is_dir else ""))
        if result.include is not None:
            ignored = bool(result.include)
    return ignored


def list_files(root: str | os.PathLike[str]) -> list[PackedFile]:
    return [PackedFile(rel, st.st_size) for rel, st in walk(root)
            if stat.S_ISREG(st.st_mode)]


_NUL = bytes(tarfile.BLOCKSIZE)
_USTAR_MAX = 8 ** 11  # sizes and times that fit a ustar header's 11 octal digits


def _header(name: str, *, typeflag: bytes, mode: int, size: int, mtime: int,
            linkname: str = "") -> bytes:
    """The tar header of one member, as tarfile writes it in PAX format (byte for byte): a
    plain ustar block when the names are ASCII and short and the numbers fit, else tarfile's
    own PAX extended header (which this writes directly only for speed: tarfile's costs more
    than reading a small file)."""
    if (len(name) <= 100 and len(linkname) <= 100 and name.isascii() and linkname.isascii()
            and 0 <= size < _USTAR_MAX and 0 <= mtime < _USTAR_MAX):
        block = b"".join((
            name.encode().ljust(100, b"\0"), b"%07o\0" % mode, b"0000000\0", b"0000000\0",
            b"%011o\0" % size, b"%011o\0" % mtime, b"        ", typeflag,
            linkname.encode().ljust(100, b"\0"), tarfile.POSIX_MAGIC,
        )).ljust(tarfile.BLOCKSIZE, b"\0")
        return block[:148] + b"%06o\0" % sum(block) + block[155:]
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime, info.linkname = typeflag, mode, size, mtime, \
        linkname
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def pack(root: str | os.PathLike[str], out: IO[bytes],
         entries: Iterable[tuple[str, os.stat_result]] | None = None) -> list[PackedFile]:
    """Write the folder as a tar to `out`; returns the regular files packed.

    A PAX-format tar as `tarfile` writes it (the same bytes), with owners cleared, modes
    reduced to 755/644 and whole-second times; written here member by member, which is 1.5x
    faster than tarfile on many small files. A file that shrinks while it is packed is an
    OSError (the archive would lie about it); one that grows is cut at its size when listed.
    `entries`: the folder's listing when the caller has walked it already."""
    base = os.fspath(root)
    files: list[PackedFile] = []
    written = 0
    for rel, st in walk(base) if entries is None else entries:
        mode, mtime = st.st_mode, int(st.st_mtime)
        if stat.S_ISDIR(mode):
            head = _header(rel + "/", typeflag=tarfile.DIRTYPE, mode=0o755, size=0, mtime=mtime)
        elif stat.S_ISLNK(mode):
            head = _header(rel, typeflag=tarfile.SYMTYPE, mode=0o777, size=0, mtime=mtime,
                           linkname=os.readlink(os.path.join(base, rel)))
        else:
            size = st.st_size
            head = _header(rel, typeflag=tarfile.REGTYPE, mode=0o755 if mode & 0o111 else 0o644,
                           size=size, mtime=mtime)
            pad = _NUL[:-size % tarfile.BLOCKSIZE]
            fd = os.open(os.path.join(base, rel), _READ_FLAGS)
            try:
                if size <= _SMALL:  # one read and one write for the whole member
                    data = os.read(fd, size)
                    while len(data) < size:
                        more = os.read(fd, size - len(data))
                        if not more:
                            raise OSError(f"{rel} shrank while it was packed")
                        data += more
                    out.write(b"".join((head, data, pad)))
                else:
                    out.write(head)
                    left = size
                    while left:
                        chunk = os.read(fd, min(left, _CHUNK))
                        if not chunk:
                            raise OSError(f"{rel} shrank while it was packed")
                        out.write(chunk)
                        left -= len(chunk)
                    if pad:
                        out.write(pad)
            finally:
                os.close(fd)
            written += len(head) + size + len(pad)
            files.append(PackedFile(rel, size))
            continue
        out.write(head)
        written += len(head)
    # The end: two empty blocks, then zeros to a whole record, as tarfile writes it.
    out.write(bytes(2 * tarfile.BLOCKSIZE + (-(written + 2 * tarfile.BLOCKSIZE)
                                             % tarfile.RECORDSIZE)))
    return files


def unpack(src: IO[bytes], dest: str | os.PathLike[str], *, max_bytes: int,
           max_members: int = 1_000_000) -> int:
    """Extract a tar (plain or compressed) read as a stream into `dest`; returns the bytes
    written. UnsafeArchive on anything that would leave `dest`, a special file, or a budget
    passed (what was extracted before stays: the caller discards the folder). The rules are
    stagekit's, the same the centers apply (see `stagekit.check_member`)."""
    return stagekit.safe_unpack(src, os.fspath(dest), max_bytes=max_bytes,
                                max_members=max_members)
