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
from collections.abc import Iterator
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
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")

    def visit(folder: Path, rel: str, specs: list[tuple[str, pathspec.GitIgnoreSpec]]
              ) -> Iterator[tuple[str, os.stat_result]]:
        own = _spec(folder)
        if own is not None:
            specs = [*specs, (rel, own)]
        try:
            names = sorted(os.listdir(folder))
        except PermissionError:
            return
        for name in names:
            if name in ALWAYS_LEFT_OUT:
                continue
            child = folder / name
            child_rel = f"{rel}/{name}" if rel else name
            st = child.lstat()
            is_dir = stat.S_ISDIR(st.st_mode)
            if _ignored(child_rel, is_dir, specs):
                continue
            if is_dir and (child / DOWNLOAD_MARKER).is_file():
                continue
            if is_dir:
                yield child_rel, st
                yield from visit(child, child_rel, specs)
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


def pack(root: str | os.PathLike[str], out: IO[bytes]) -> list[PackedFile]:
    """Write the folder as a tar to `out`; returns the regular files packed."""
    base = Path(root)
    files: list[PackedFile] = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in walk(base):
            info = tarfile.TarInfo(rel)
            info.mtime = int(st.st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(base / rel)
                info.mode = 0o777
                tar.addfile(info)
            else:
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(base / rel, "rb") as fh:
                    tar.addfile(info, fh)
                files.append(PackedFile(rel, st.st_size))
    return files


def unpack(src: IO[bytes], dest: str | os.PathLike[str], *, max_bytes: int,
           max_members: int = 1_000_000) -> int:
    """Extract a tar (plain or compressed) read as a stream into `dest`; returns the bytes
    written. UnsafeArchive on anything that would leave `dest`, a special file, or a budget
    passed (what was extracted before stays: the caller discards the folder). The rules are
    stagekit's, the same the centers apply (see `stagekit.check_member`)."""
    return stagekit.safe_unpack(src, os.fspath(dest), max_bytes=max_bytes,
                                max_members=max_members)
