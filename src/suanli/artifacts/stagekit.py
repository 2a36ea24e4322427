"""Bytes into a run's work folder and its declared outputs back out, with the standard library only.

The same code runs in three places: the local executor's supervisor (root, inside the run's
mount namespace, before the job starts and after it has ended), a Slurm batch script and a Ray
entrypoint wrapper (sent along as source and run by the node's `python3`, which may be older
than the one suanli runs on: nothing here needs more than Python 3.8, and tarfile's `data` filter
is used where it exists, on top of checks of our own that hold where it does not).

- `safe_unpack`: a tar read as a stream; only files, folders and links that stay inside the
  destination (checked against what is already on disk, so a link planted by an earlier member
  cannot carry a later one out), no devices or fifos, no set-id bits, within a byte and member
  budget. Anything else stops it with `UnsafeArchive`.
- `pack_outputs`: the entries of the work folder that the job's `outputs` globs name, as a tar.
  Symbolic links are never followed nor kept (a job that plants `out -> /etc` gets nothing of
  `/etc`), files are opened with O_NOFOLLOW relative to folders opened the same way, and the tar
  stops at a byte budget.
- `fetch_item` / `upload`: a stage item from suanli over HTTP (the run's token), its SHA-256
  verified; the packed outputs PUT back.

Command line (remote backends): `python3 stagekit.py in SPEC.json` / `python3 stagekit.py out
SPEC.json` / `python3 stagekit.py wrap SPEC.json -- COMMAND...` (runs the command, forwards
SIGTERM/SIGINT to it, then packs and uploads the outputs whatever its end, and exits with its
status).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from typing import IO, Any

CHUNK = 1 << 20


class UnsafeArchive(Exception):
    """An archive that would write outside its folder, or more than it may."""


class OverBudget(UnsafeArchive):
    """An archive with more bytes or entries than the budget it was unpacked within."""


class StageError(Exception):
    """Bytes that could not be brought in (not found, refused, not the announced content)."""


# -- unpacking -------------------------------------------------------------------------------------
MAX_NAME = 1024  # bytes of a member's path; each part at most 255 (no PATH_MAX games)
MAX_DEPTH = 64


def _parts(text: str, what: str, name: str) -> list[str]:
    """The parts of a relative path without `..`, or UnsafeArchive."""
    if not text or text.startswith("/") or "\0" in text or len(text.encode()) > MAX_NAME:
        raise UnsafeArchive(f"{name!r}: {what} is empty, absolute or too long")
    parts = [x for x in text.split("/") if x not in ("", ".")]
    if ".." in parts or len(parts) > MAX_DEPTH or any(len(x.encode()) > 255 for x in parts):
        raise UnsafeArchive(f"{name!r}: {what} goes up ('..') or is too deep")
    return parts


def check_member(member: tarfile.TarInfo, root: str) -> str:
    """Where `member` goes under `root`, or UnsafeArchive. The rules need no path resolution
    (realpath stops resolving past PATH_MAX, which let crafted link chains out of tarfile's own
    filter, CVE-2025-4517): names and link targets are relative without `..`, so a link can only
    point further down; nothing is written through a link already on disk (every folder on the way
    is checked with lstat), and an existing link is never replaced."""
    name = member.name
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{name!r}: only files, folders and links")
    parts = _parts(name, "the name", name)
    if not parts:
        raise UnsafeArchive(f"{name!r}: no name")
    here = root
    for part in parts[:-1]:
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            break  # created by the extraction, as a plain folder
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"{name!r} would be written through a link or a file")
    target = os.path.join(root, *parts)
    try:
        if stat.S_ISLNK(os.lstat(target).st_mode):
            raise UnsafeArchive(f"{name!r} would replace a link")
    except FileNotFoundError:
        pass
    if member.issym():
        _parts(member.linkname, "the link's target", name)
    if member.islnk():
        link = os.path.join(root, *_parts(member.linkname, "the link's target", name))
        here = root
        for part in _parts(member.linkname, "the link's target", name):
            here = os.path.join(here, part)
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                raise UnsafeArchive(f"{name!r} links to nothing") from None
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(f"{name!r} links through a link")
        if not stat.S_ISREG(os.lstat(link).st_mode):
            raise UnsafeArchive(f"{name!r} is a hard link to no regular file")
    return target


def safe_unpack(src: IO[bytes], dest: str, *, max_bytes: int,
                max_members: int = 1_000_000) -> int:
    """Extract a tar stream into `dest` (created); returns the bytes written."""
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    total = 0
    count = 0
    has_filter = hasattr(tarfile, "data_filter")
    try:
        with tarfile.open(fileobj=src, mode="r|*") as tar:
            for member in tar:
                count += 1
                if count > max_members:
                    raise OverBudget(f"more than {max_members:,} entries")
                name = member.name
                target = check_member(member, root)
                total += max(0, member.size)
                if total > max_bytes:
                    raise OverBudget(f"more than {max_bytes:,} bytes unpacked")
                member.uid = member.gid = 0
                member.uname = member.gname = ""
                if member.isdir():
                    member.mode = 0o755
                elif member.isfile():
                    member.mode = 0o755 if member.mode & 0o111 else 0o644
                if has_filter:  # tarfile's own checks too, against the disk as it is now
                    try:
                        tar.extract(member, root, filter="data")
                    except tarfile.FilterError as exc:
                        raise UnsafeArchive(f"{name!r}: {exc}") from exc
                else:
                    tar.extract(member, root, set_attrs=False)
                    if member.isfile() or member.isdir():
                        os.chmod(target, member.mode)
    except tarfile.ReadError as exc:
        raise UnsafeArchive(f"not a tar archive: {exc}") from exc
    return total


class _Hashing:
    """A readable stream that hashes (and counts) what passes through it."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else CHUNK)
        self.size += len(data)
        if self.size > self.limit:
            raise StageError("more bytes than announced")
        self.digest.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


# -- output globs -----------------------------------------------------------------------------
def _glob_parts(pattern: str) -> list[str]:
    p = pattern.strip()
    while p.startswith("./"):
        p = p[2:]
    parts = [x for x in p.rstrip("/").split("/") if x not in ("", ".")] or ["**"]
    out: list[str] = []
    for x in parts:  # `**/**` is `**`
        if not (x == "**" and out and out[-1] == "**"):
            out.append(x)
    return out


def glob_match(parts: list[str], path: list[str]) -> bool:
    """Whether the path's parts match the pattern's: `*`, `?` and `[...]` within one part (fnmatch),
    `**` as zero or more whole parts. Dynamic programming over (pattern part, path part): linear
    in their product, never backtracking (a regex of nested `(?:.*/)?` took hours on a crafted
    pattern)."""
    n = len(path)
    ok = [False] * (n + 1)  # ok[j]: the pattern so far matches path[:j]
    ok[0] = True
    for part in parts:
        nxt = [False] * (n + 1)
        if part == "**":
            seen = False
            for j in range(n + 1):
                seen = seen or ok[j]
                nxt[j] = seen
        else:
            for j in range(n):
                if ok[j] and fnmatch.fnmatchcase(path[j], part):
                    nxt[j + 1] = True
        ok = nxt
    return ok[n]


def matcher(patterns: list[str]) -> Any:
    compiled = [_glob_parts(p) for p in patterns if p.strip()]

    def matches(rel: str) -> bool:
        path = rel.split("/")
        return any(glob_match(parts, path) for parts in compiled)

    return matches


# -- packing ----------------------------------------------------------------------------------------
class TooLarge(Exception):
    pass


def pack_outputs(work: str, patterns: list[str], out: str, *, max_bytes: int) -> dict[str, Any]:
    """Pack what `patterns` name in `work` into the tar `out`. Returns {files, bytes, skipped}
    (symbolic links and special files left out); TooLarge past `max_bytes` (`out` removed)."""
    matches = matcher(patterns)
    summary: dict[str, Any] = {"files": 0, "bytes": 0, "skipped": []}
    top = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w|",
                                                     format=tarfile.PAX_FORMAT) as tar:
            _pack_folder(tar, top, "", False, matches, summary, max_bytes)
    except TooLarge:
        os.unlink(out)
        raise
    finally:
        os.close(top)
    return summary


def _pack_folder(tar: tarfile.TarFile, dir_fd: int, rel: str, wanted: bool, matches: Any,
                 summary: dict[str, Any], max_bytes: int) -> None:
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        child = rel + "/" + entry.name if rel else entry.name
        keep = wanted or matches(child)
        try:
            st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            if keep:
                summary["skipped"].append(child + " (a symbolic link)")
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                              dir_fd=dir_fd)
            except OSError:
                continue
            try:
                if keep:
                    info = tarfile.TarInfo(child)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = int(st.st_mtime)
                    tar.addfile(info)
                _pack_folder(tar, sub, child, keep, matches, summary, max_bytes)
            finally:
                os.close(sub)
            continue
        if not keep:
            continue
        if not stat.S_ISREG(st.st_mode):
            summary["skipped"].append(child + " (not a regular file)")
            continue
        try:
            ffd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            summary["skipped"].append(child + " (unreadable)")
            continue
        with os.fdopen(ffd, "rb") as fh:
            fst = os.fstat(fh.fileno())
            if not stat.S_ISREG(fst.st_mode):
                continue
            if summary["bytes"] + fst.st_size > max_bytes:
                raise TooLarge(f"the outputs are over {max_bytes:,} bytes")
            info = tarfile.TarInfo(child)
            info.size = fst.st_size
            info.mode = 0o755 if fst.st_mode & 0o111 else 0o644
            info.mtime = int(fst.st_mtime)
            try:
                tar.addfile(info, fh)
            except OSError:  # shrank while read (a process of the job still writing)
                raise TooLarge(f"{child} changed while it was packed") from None
            summary["files"] += 1
            summary["bytes"] += fst.st_size


def chown_tree(root: str, uid: int, gid: int) -> None:
    """Give everything under `root` (itself included) to uid:gid, never following a link."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)


# -- HTTP ---------------------------------------------------------------------------------------------
def _open_item(item: dict[str, Any], token: str) -> IO[bytes]:
    local = item.get("local_path")
    if local and os.path.isfile(local):
        return open(local, "rb")
    url = str(item.get("url") or "")
    if not url:
        raise StageError("artifact {} has no source".format(item["sha256"][:12]))
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        resp: IO[bytes] = urllib.request.urlopen(req, timeout=60)
    except Exception as exc:
        raise StageError("cannot fetch artifact {}: {}".format(item["sha256"][:12], exc)) from exc
    return resp


def fetch_item(item: dict[str, Any], work: str, token: str, *, max_bytes: int,
               max_members: int = 1_000_000) -> int:
    """Bring one stage item into `work`: unpacked at `dest` (within `max_bytes` and
    `max_members`), or written as the file `dest`. Returns the bytes it holds; StageError /
    UnsafeArchive (OverBudget past the budget) when it cannot."""
    dest_rel = str(item.get("dest") or "")
    root = os.path.realpath(work)
    parts = _parts(dest_rel, "the destination", dest_rel) if dest_rel else []
    here = root
    for part in parts:  # never through a link an earlier item unpacked
        here = os.path.join(here, part)
        if os.path.islink(here):
            raise UnsafeArchive(f"destination {dest_rel!r} goes through a link")
    dest = os.path.join(root, *parts)
    size = int(item.get("size") or 0)
    with _open_item(item, token) as raw:
        src = _Hashing(raw, size if size > 0 else max_bytes)
        if item.get("unpack", True):
            written = safe_unpack(src, dest, max_bytes=max_bytes,  # type: ignore[arg-type]
                                  max_members=max_members)
            src.drain()
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
            written = src.size
    if src.digest.hexdigest() != item["sha256"]:
        raise StageError("artifact {} arrived with another SHA-256 ({})".format(
            item["sha256"][:12], src.digest.hexdigest()[:12]))
    return written


def upload(path: str, url: str, token: str) -> str:
    """PUT the file at `path` to `url` with the run's token; returns the answer's body."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        req = urllib.request.Request(url, data=fh, method="PUT", headers={
            "Authorization": "Bearer " + token, "Content-Length": str(size),
            "Content-Type": "application/x-tar"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            return bytes(resp.read()).decode("utf-8", "replace")


# -- the command line (remote backends) -----------------------------------------------------------
def stage_in(spec: dict[str, Any], work: str) -> None:
    budget = int(spec.get("max_bytes") or (1 << 40))
    for item in spec.get("stage", []):
        budget -= fetch_item(item, work, str(spec.get("token", "")), max_bytes=budget)


def stage_out(spec: dict[str, Any], work: str) -> None:
    patterns = list(spec.get("outputs") or [])
    url = str(spec.get("outputs_url") or "")
    if not patterns or not url:
        return
    fd, tmp = tempfile.mkstemp(prefix=".suanli-outputs.", suffix=".tar",
                               dir=spec.get("outputs_tmp") or None)
    os.close(fd)
    try:
        try:
            summary = pack_outputs(work, patterns, tmp,
                                   max_bytes=int(spec.get("outputs_max_bytes") or (1 << 40)))
        except TooLarge as exc:
            sys.stderr.write(f"suanli: outputs not kept: {exc}\n")
            return
        for note in summary["skipped"]:
            sys.stderr.write(f"suanli: outputs: left out {note}\n")
        if not summary["files"]:  # nothing to download: no empty archive is kept
            sys.stderr.write("suanli: outputs: no file matched " + ", ".join(patterns) + "\n")
            return
        try:
            upload(tmp, url, str(spec.get("token", "")))
        except Exception as exc:
            sys.stderr.write(f"suanli: outputs upload failed: {exc}\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def wrap(spec: dict[str, Any], work: str, command: list[str]) -> int:
    """Run `command` in `work`; whatever its end, pack and upload the outputs; its exit status."""
    child = subprocess.Popen(command, cwd=work)

    def forward(signum: int, frame: object) -> None:
        try:
            child.send_signal(signum)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rc = child.wait()
    sys.stdout.flush()
    stage_out(spec, work)
    return 128 - rc if rc < 0 else rc


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("in", "out", "wrap"):
        sys.stderr.write("usage: stagekit.py in|out|wrap SPEC.json [-- COMMAND...]\n")
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    work = os.getcwd()
    if argv[0] == "in":
        try:
            stage_in(spec, work)
        except (StageError, UnsafeArchive, OSError) as exc:
            sys.stderr.write(f"suanli: staging failed: {exc}\n")
            return 1
        return 0
    if argv[0] == "out":
        stage_out(spec, work)
        return 0
    command = argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:]
    return wrap(spec, work, command)



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
