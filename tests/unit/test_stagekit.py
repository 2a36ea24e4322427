"""stagekit: the safe unpack, the outputs globs and packing, on this Python and on the nodes'
older one (Debian's python3 has no tarfile data filter: our own checks must hold alone)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from suanli.artifacts import stagekit
from suanli.artifacts.stagekit import UnsafeArchive, matcher, pack_outputs, safe_unpack

from ..contract.stage_server import names_in, tar_of

KIT = Path(stagekit.__file__)
OLD_PYTHON = "/usr/bin/python3"


def crafted(kind: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(name: str, data: bytes = b"x", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = 0 if attrs else len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tar.addfile(info, None if attrs else io.BytesIO(data))

        add("fine.txt")
        if kind == "dotdot":
            add("a/../../escape")
        elif kind == "absolute":
            add("/escape")
        elif kind == "symlink-out":
            add("l", type=tarfile.SYMTYPE, linkname="/")
        elif kind == "symlink-chain":
            add("a", type=tarfile.SYMTYPE, linkname=".")
            add("b", type=tarfile.SYMTYPE, linkname="a/..")
            add("b/escape")
        elif kind == "symlink-then-file":
            add("sub/", type=tarfile.DIRTYPE)
            add("sub/l", type=tarfile.SYMTYPE, linkname="../..")
            add("sub/l/escape")
        elif kind == "hardlink-out":
            add("h", type=tarfile.LNKTYPE, linkname="../outside.txt")
        elif kind == "fifo":
            add("f", type=tarfile.FIFOTYPE)
        elif kind == "device":
            add("d", type=tarfile.BLKTYPE, devmajor=8, devminor=0)
    return out.getvalue()


KINDS = ["dotdot", "absolute", "symlink-out", "symlink-chain", "symlink-then-file",
         "hardlink-out", "fifo", "device"]


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_archives_are_refused_and_nothing_escapes(tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "a" / "work"
    (tmp_path / "a" / "outside.txt").parent.mkdir(parents=True)
    (tmp_path / "a" / "outside.txt").write_text("keep")
    with pytest.raises(UnsafeArchive):
        safe_unpack(io.BytesIO(crafted(kind)), str(dest), max_bytes=1 << 20)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["outside.txt", "work"]
    assert not (tmp_path / "escape").exists()


@pytest.mark.skipif(not Path(OLD_PYTHON).exists(), reason="no system python3")
@pytest.mark.parametrize("kind", KINDS)
def test_the_nodes_python_refuses_them_too(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "x.tar"
    archive.write_bytes(crafted(kind))
    dest = tmp_path / "a" / "work"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import stagekit as k\n"
            "try:\n k.safe_unpack(open(sys.argv[2], 'rb'), sys.argv[3], max_bytes=1<<20)\n"
            "except k.UnsafeArchive as e:\n print('refused', e); sys.exit(0)\nsys.exit(1)\n")
    done = subprocess.run([OLD_PYTHON, "-I", "-c", code, str(KIT.parent), str(archive),
                           str(dest)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and "refused" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "a" / "escape").exists()


def test_a_fine_archive_unpacks_with_sane_modes_and_links_inside(tmp_path: Path) -> None:
    buf = io.BytesIO(tar_of({"bin/run.sh": "echo\n", "data/": "data/", "data/x": "1"},
                            modes={"bin/run.sh": 0o4755})[:-1024])  # without its end blocks
    with tarfile.open(fileobj=buf, mode="a") as tar:
        link = tarfile.TarInfo("latest")
        link.type, link.linkname = tarfile.SYMTYPE, "data/x"
        tar.addfile(link)
    data = buf.getvalue()
    dest = tmp_path / "w"
    assert safe_unpack(io.BytesIO(data), str(dest), max_bytes=1 << 20) == 6
    assert (dest / "latest").read_text() == "1"  # a link inside stays
    mode = os.stat(dest / "bin" / "run.sh").st_mode
    assert mode & 0o111 and not mode & 0o6000  # executable, never set-id
    with pytest.raises(UnsafeArchive, match="bytes"):
        safe_unpack(io.BytesIO(data), str(tmp_path / "v"), max_bytes=3)


@pytest.mark.parametrize("pattern, yes, no", [
    ("out/*.txt", ["out/a.txt"], ["out/a.log", "out/d/a.txt", "a.txt"]),
    ("**/*.log", ["a.log", "x/y/z.log"], ["a.txt"]),
    ("out/", ["out"], ["outx", "out2"]),
    ("./model.pt", ["model.pt"], ["x/model.pt"]),
    ("res?/[ab].csv", ["res1/a.csv"], ["res1/c.csv", "res12/a.csv"]),
])
def test_output_globs(pattern: str, yes: list[str], no: list[str]) -> None:
    m = matcher([pattern])
    assert all(m(p) for p in yes) and not any(m(p) for p in no)


def test_packing_follows_no_link_and_keeps_exactly_what_was_named(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "out" / "deep").mkdir(parents=True)
    (work / "out" / "a.txt").write_text("a")
    (work / "out" / "deep" / "b.txt").write_text("b")
    (work / "out" / "shadow").symlink_to("/etc/shadow")
    (work / "out" / "up").symlink_to("/etc")
    (work / "linked").symlink_to("/etc")
    os.mkfifo(work / "out" / "pipe")
    target = tmp_path / "o.tar"
    summary = pack_outputs(str(work), ["out/**", "linked", "linked/*"], str(target),
                           max_bytes=1 << 20)
    assert names_in(target.read_bytes()) == {"out/a.txt": b"a", "out/deep/b.txt": b"b"}
    assert len(summary["skipped"]) == 4  # two links in out/, the fifo, the linked folder
    with pytest.raises(stagekit.TooLarge):
        pack_outputs(str(work), ["out/**"], str(target), max_bytes=1)
    assert not target.exists()


def test_the_work_folder_itself_as_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w").symlink_to("/etc")
    with pytest.raises(OSError):
        pack_outputs(str(tmp_path / "w"), ["**"], str(tmp_path / "o.tar"), max_bytes=1 << 20)


def test_fetch_item_checks_the_sha256(tmp_path: Path) -> None:
    data = tar_of({"f": "1"})
    src = tmp_path / "blob"
    src.write_bytes(data)
    item = {"sha256": "0" * 64, "size": len(data), "dest": "", "unpack": True,
            "local_path": str(src), "url": ""}
    with pytest.raises(stagekit.StageError, match="SHA-256"):
        stagekit.fetch_item(item, str(tmp_path / "w"), "", max_bytes=1 << 20)
    with pytest.raises(UnsafeArchive, match="goes up"):
        stagekit.fetch_item({**item, "dest": "../x"}, str(tmp_path / "w"), "", max_bytes=9)
    shutil.rmtree(tmp_path / "w", ignore_errors=True)
    assert json.dumps(item)
