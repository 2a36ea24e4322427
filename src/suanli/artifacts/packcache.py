"""What a folder packed to, remembered on the uploading machine.

A second upload of an unchanged work folder should cost a listing, not a read: `fingerprint`
lists the folder as `pack` would (the same walk and ignore rules) and hashes each entry's path,
mode, size, modification and change times (nanoseconds), inode and device; `lookup` answers the
archive's SHA-256 and size last packed from exactly that listing. Any write to a file changes
its change time (which no user can set back), so a hit means the same bytes, as for git's index
and rsync. Entries whose change time is within RACY_S of when they were packed are not
remembered (a write in the same clock tick could go unseen; git's "racy" rule).

The cache is only a shortcut: the server checks every upload's SHA-256, and a stale entry at
worst costs one refused upload (the uploader forgets it and packs again) — unless it names
content the tenant already has: then nothing is uploaded and the job runs that content, which no
server can notice. So an entry is believed only from folders nobody else may write (see
`lookup`). The rule needs change times every write updates: not FAT or exFAT, where the
"change" time is the creation time (a rewrite keeping size and modification time goes unseen).
Files live under $SUANLI_CACHE_DIR, else $XDG_CACHE_HOME/suanli/packs, else
~/.cache/suanli/packs (0700), one small JSON file per folder state; the oldest go past
MAX_ENTRIES.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .archive import PackedFile, walk

FORMAT = "suanli-pack-1"  # the packer's byte format: a change of it invalidates every entry
RACY_S = 2.0
MAX_ENTRIES = 2000


@dataclass
class Fingerprint:
    key: str
    entries: list[tuple[str, os.stat_result]] = field(repr=False)
    files: list[PackedFile] = field(repr=False)
    newest_change_ns: int = 0


def cache_dir() -> Path:
    if custom := os.environ.get("SUANLI_CACHE_DIR"):
        return Path(custom)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "suanli" / "packs"


def fingerprint(root: str | os.PathLike[str]) -> Fingerprint:
    """The folder's listing (as `pack` would take it) and its key."""
    digest = hashlib.sha256(f"{FORMAT}\0{os.path.realpath(root)}\n".encode())
    entries = list(walk(root))
    files: list[PackedFile] = []
    newest = 0
    for rel, st in entries:
        digest.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
                      f"\0{st.st_ino}\0{st.st_dev}\n".encode("utf-8", "surrogateescape"))
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
        if stat.S_ISREG(st.st_mode):
            files.append(PackedFile(rel, st.st_size))
    return Fingerprint(digest.hexdigest(), entries, files, newest)


def _entry(key: str) -> Path:
    return cache_dir() / key[:2] / key


def _trusted(folder: Path) -> bool:
    """Only a cache folder of the caller's own that nobody else may write is believed."""
    try:
        st = folder.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def lookup(fp: Fingerprint) -> tuple[str, int] | None:
    """(SHA-256, size) of the archive this exact listing packed to, if remembered (and the
    cache folder, the entry's folder and the entry are the caller's own, the folders writable
    by nobody else: a folder that was once writable by others may hold what they planted
    before `remember` made it 0700)."""
    path = _entry(fp.key)
    if not (_trusted(cache_dir()) and _trusted(path.parent)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return None
            data = json.loads(fh.read(4096).decode("utf-8"))
        sha, size = str(data["sha256"]), int(data["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or size < 0:
        return None
    return sha, size


def remember(fp: Fingerprint, sha256: str, size: int, *, now_ns: int | None = None) -> bool:
    """Keep what the listing packed to; False when not kept (changed too recently to be sure,
    or the cache folder cannot be written: it is only a shortcut)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if fp.newest_change_ns >= now_ns - int(RACY_S * 1e9):
        return False
    path = _entry(fp.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(cache_dir(), 0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"sha256": sha256, "size": size}), encoding="utf-8")
        os.replace(tmp, path)
        _prune()
    except OSError:
        return False
    return True


def forget(fp: Fingerprint) -> None:
    try:
        _entry(fp.key).unlink()
    except OSError:
        pass


def _prune() -> None:
    """Past MAX_ENTRIES, drop the oldest tenth."""
    root = cache_dir()
    found = [p for p in root.glob("??/*") if p.is_file()]
    if len(found) <= MAX_ENTRIES:
        return
    found.sort(key=lambda p: p.stat().st_mtime)
    for p in found[: len(found) - MAX_ENTRIES + MAX_ENTRIES // 10]:
        p.unlink(missing_ok=True)
