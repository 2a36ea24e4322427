"""What an outside review of issue 16's staging found, each as the attack it was: a link chain
past PATH_MAX that carried tarfile's own filter out of the folder (CVE-2025-4517) with root
writing the file, an output glob that backtracked for hours in the root supervisor, a log swapped
for a link to the platform's secrets, and a link planted in a Slurm center's shared staging
folder."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from suanli.artifacts import unpack
from suanli.artifacts.stagekit import UnsafeArchive, matcher, safe_unpack
from suanli.connectors.base import read_chunk
from suanli.connectors.slurm import SlurmConnector


def path_max_escape(up: int, target: str, content: bytes) -> bytes:
    """The reviewer's archive: symlinks whose resolved path outgrows PATH_MAX, so realpath stops
    resolving while the kernel follows them, then a file written through `escape`."""
    comp, steps, path = "d" * 247, "abcdefghijklmnop", ""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in steps:
            a = tarfile.TarInfo(os.path.join(path, comp))
            a.type, a.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(a)
            b = tarfile.TarInfo(os.path.join(path, i))
            b.type, b.linkname = tarfile.SYMTYPE, comp
            tar.addfile(b)
            path = os.path.join(path, comp)
        linkpath = os.path.join(*steps, "l" * 254)
        link = tarfile.TarInfo(linkpath)
        link.type, link.linkname = tarfile.SYMTYPE, "../" * len(steps)
        tar.addfile(link)
        esc = tarfile.TarInfo("escape")
        esc.type, esc.linkname = tarfile.SYMTYPE, linkpath + "/.." * (1 + up)
        tar.addfile(esc)
        f = tarfile.TarInfo("escape/" + target)
        f.size = len(content)
        tar.addfile(f, io.BytesIO(content))
    return buf.getvalue()


@pytest.mark.parametrize("how", ["stagekit", "cli"])
def test_a_link_chain_past_path_max_writes_nothing_outside(tmp_path: Path, how: str) -> None:
    dest = tmp_path / "a" / "work"
    dest.mkdir(parents=True)
    data = path_max_escape(2, "PWNED", b"owned\n")
    with pytest.raises(UnsafeArchive):
        if how == "stagekit":
            safe_unpack(io.BytesIO(data), str(dest), max_bytes=1 << 20)
        else:
            unpack(io.BytesIO(data), dest, max_bytes=1 << 20)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "a" / "PWNED").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def members(*entries: tuple[str, str, str]) -> bytes:
    """A tar of (name, kind, link target or content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, value
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value.encode()))
    return buf.getvalue()


@pytest.mark.parametrize("entries", [
    [("up", "sym", "../x")],  # a link that points up, even one that would stay inside
    [("abs", "sym", "/etc")],
    [("d", "sym", "sub"), ("d/f", "file", "through a link")],  # written through a link
    [("f", "sym", "g"), ("f", "file", "replaces a link")],
    [("h", "hard", "../outside")],
])
def test_links_only_point_down_and_nothing_goes_through_one(tmp_path: Path,
                                                            entries: list[tuple[str, str, str]]
                                                            ) -> None:
    with pytest.raises(UnsafeArchive):
        safe_unpack(io.BytesIO(members(*entries)), str(tmp_path / "w"), max_bytes=1 << 20)


def test_links_that_stay_below_still_unpack(tmp_path: Path) -> None:
    data = members(("data/a.csv", "file", "1,2\n"), ("latest", "sym", "data/a.csv"),
                   ("copy", "hard", "data/a.csv"))
    safe_unpack(io.BytesIO(data), str(tmp_path / "w"), max_bytes=1 << 20)
    assert (tmp_path / "w" / "latest").read_text() == "1,2\n"
    assert (tmp_path / "w" / "copy").read_text() == "1,2\n"


@pytest.mark.timeout(20)
def test_an_output_glob_cannot_stall_the_supervisor() -> None:
    """`**/a/**/a/...` against a deep path took hours as a backtracking regex, as root."""
    deep = "/".join(["a"] * 46 + ["y"])
    crafted = matcher(["**/" + "a/**/" * 20 + "x"])
    assert crafted(deep) is False
    assert matcher(["**/" + "a/**/" * 20 + "y"])(deep) is True
    for bad in ("[]", "[z-a]", "[!]", "["):  # what made re.compile fail: no match, no crash
        assert matcher([bad])("out/a") is False
    assert matcher(["out/**"])("out/sub/b.txt") and not matcher(["out/*"])("out/sub/b.txt")


def test_a_log_swapped_for_a_link_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "demo-credentials.json"
    secret.write_text('{"platform_admin": "sl_secret"}')
    log = tmp_path / "job.out"
    log.symlink_to(secret)
    assert read_chunk(log, 0) == b""
    os.mkfifo(tmp_path / "fifo.out")
    assert read_chunk(tmp_path / "fifo.out", 0) == b""  # and does not hang on a fifo
    real = tmp_path / "real.out"
    real.write_bytes(b"hello\n")
    assert read_chunk(real, 0) == b"hello\n"


def test_a_link_planted_in_slurms_staging_folder_is_not_followed(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    victim = tmp_path / "secret"
    victim.write_text("orig\n")
    victim.chmod(0o600)
    payload = b"* * * * * root id > /tmp/pwned\n"
    blob = tmp_path / "blob"
    blob.write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    for name in (f".{sha}.{os.getpid()}.tmp", f".{sha}.tmp"):  # the names a job could guess
        (stage / name).symlink_to(victim)
    conn = SlurmConnector({"url": "http://127.0.0.1:1", "staging_dir": str(stage)}, tmp_path)
    item = conn._staged_copy({"sha256": sha, "size": len(payload), "dest": "", "unpack": False,
                              "local_path": str(blob), "url": "x"})
    assert victim.read_text() == "orig\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    staged = Path(item["local_path"])
    assert not staged.is_symlink() and staged.read_bytes() == payload
