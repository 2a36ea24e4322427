"""artifacts/: packing with git's ignore rules (deterministic bytes), safe unpacking, and the
content-addressed blob store."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from suanli.artifacts import (
    DOWNLOAD_MARKER,
    BlobError,
    BlobStore,
    UnsafeArchive,
    list_files,
    pack,
    unpack,
    walk,
)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)


def packed(root: Path) -> bytes:
    buf = io.BytesIO()
    pack(root, buf)
    return buf.getvalue()


def names(root: Path) -> list[str]:
    return [f.path for f in list_files(root)]


def test_ignore_rules_nested_gitignore_suanliignore_and_negation(tmp_path: Path) -> None:
    write(tmp_path, {
        ".gitignore": "*.log\nbuild/\n!keep.log\n",
        ".suanliignore": "data/raw/\n",
        "train.py": "print(1)",
        "debug.log": "x", "keep.log": "kept",
        "build/out.o": "o",
        "data/raw/huge.bin": "r", "data/clean.csv": "c",
        "sub/.gitignore": "*.tmp\n!important.tmp\n/local-only\n",
        "sub/a.tmp": "t", "sub/important.tmp": "i", "sub/local-only": "l",
        "sub/deeper/local-only": "d", "sub/deeper/b.log": "b",
        ".git/config": "git's own", ".git/objects/ab": "obj",
    })
    got = names(tmp_path)
    assert set(got) == {
        ".gitignore", ".suanliignore", "train.py", "keep.log", "data/clean.csv",
        "sub/.gitignore", "sub/important.tmp", "sub/deeper/local-only",
    }
    # A nested ignore file applies to its folder only: *.tmp outside sub/ is kept.
    write(tmp_path, {"top.tmp": "kept"})
    assert "top.tmp" in names(tmp_path)


def test_packing_is_deterministic_and_keeps_modes_and_links(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        write(root, {"run.sh": "#!/bin/sh\necho hi\n", "lib/m.py": "x = 1\n"})
        (root / "run.sh").chmod(0o755)
        (root / "link").symlink_to("lib/m.py")
        for f in (root / "run.sh", root / "lib/m.py", root / "lib", root):
            os.utime(f, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    first = packed(a)
    time.sleep(0.01)
    assert packed(a) == first  # the same folder: the same bytes
    assert hashlib.sha256(packed(b)).digest() == hashlib.sha256(first).digest()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["run.sh"].mode == 0o755 and members["lib/m.py"].mode == 0o644
    assert members["link"].issym() and members["link"].linkname == "lib/m.py"
    assert all(m.uid == 0 and m.uname == "" for m in members.values())
    # A changed byte changes the archive.
    (a / "lib/m.py").write_text("x = 2\n")
    os.utime(a / "lib/m.py", (1_700_000_000, 1_700_000_000))
    assert packed(a) != first


def test_downloaded_outputs_are_not_packed_again(tmp_path: Path) -> None:
    """`suanli job download` marks the folder it unpacks into: a work folder with outputs
    downloaded into it packs to the same bytes as before (nothing new to upload)."""
    work = tmp_path / "w"
    (work / "src").mkdir(parents=True)
    (work / "src" / "train.py").write_text("print(1)\n")
    before = io.BytesIO()
    pack(work, before)
    got = work / "job-7-outputs"
    (got / "out").mkdir(parents=True)
    (got / "out" / "model.json").write_text("{}")
    (got / DOWNLOAD_MARKER).write_text("")
    after = io.BytesIO()
    pack(work, after)
    assert after.getvalue() == before.getvalue()
    assert [f.path for f in list_files(work)] == ["src/train.py"]
    (got / DOWNLOAD_MARKER).unlink()  # without the mark it is the tenant's own folder: packed
    assert "job-7-outputs/out/model.json" in [f.path for f in list_files(work)]


def test_pack_then_unpack_round_trips(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, {"a.txt": "A", "d/e/f.txt": "F" * 5000})
    n = unpack(io.BytesIO(packed(src)), dest, max_bytes=10**6)
    assert n == 5001
    assert (dest / "a.txt").read_text() == "A" and (dest / "d/e/f.txt").read_text() == "F" * 5000


def test_unpack_budgets(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {f"f{i}": "x" * 100 for i in range(20)})
    with pytest.raises(UnsafeArchive, match="bytes"):
        unpack(io.BytesIO(packed(src)), tmp_path / "d1", max_bytes=1000)
    with pytest.raises(UnsafeArchive, match="entries"):
        unpack(io.BytesIO(packed(src)), tmp_path / "d2", max_bytes=10**6, max_members=5)
    with pytest.raises(UnsafeArchive, match="not a tar"):
        unpack(io.BytesIO(b"not a tar at all" * 100), tmp_path / "d3", max_bytes=10**6)


def test_blob_store_put_dedup_and_failures_keep_nothing(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "store"))
    data = b"hello blobs" * 1000
    digest = hashlib.sha256(data).hexdigest()
    first = store.put(7, [data[:5], data[5:]], max_size=len(data))
    assert (first.sha256, first.size, first.new) == (digest, len(data), True)
    assert store.exists(7, digest) and not store.exists(8, digest)
    assert store.local_path(7, digest) == str(tmp_path / "store" / "7" / digest[:2] / digest)
    again = store.put(7, [data], max_size=len(data), expect_sha256=digest,
                      expect_size=len(data))
    assert not again.new
    assert b"".join(store.iter_bytes(7, digest)) == data
    assert b"".join(store.iter_bytes(7, digest, start=len(data) - 3)) == data[-3:]

    def leftovers() -> list[Path]:
        return [f for f in (tmp_path / "store").rglob("*") if f.is_file()]

    with pytest.raises(BlobError) as exc:
        store.put(7, [b"x" * 10, b"x" * 10], max_size=15)
    assert exc.value.too_large
    with pytest.raises(BlobError, match="announced"):
        store.put(7, [b"abc"], max_size=10, expect_sha256="0" * 64)
    with pytest.raises(BlobError, match="announced"):
        store.put(7, [b"abc"], max_size=10, expect_size=4)
    with pytest.raises(BlobError, match="SHA-256"):
        store.put(7, [b"abc"], max_size=10, expect_sha256="XYZ")

    def broken() -> object:
        yield b"partial"
        raise ConnectionResetError("client gone")

    with pytest.raises(ConnectionResetError):
        store.put(7, broken(), max_size=100)  # type: ignore[arg-type]
    assert leftovers() == [Path(store.path(7, digest))]
    store.delete(7, digest)
    store.delete(7, digest)  # twice is fine
    assert leftovers() == []
    with pytest.raises(ValueError):
        store.path(7, "../../etc/passwd")


def _tarfile_pack(root: Path) -> bytes:
    """The archive as Python's tarfile writes it (PAX format, owners cleared): `pack` writes
    its headers itself for speed and must give the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in walk(root):
            info = tarfile.TarInfo(rel)
            info.mtime = int(st.st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.mode = tarfile.SYMTYPE, 0o777
                info.linkname = os.readlink(root / rel)
                tar.addfile(info)
            else:
                info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o111 else 0o644
                with open(root / rel, "rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def test_pack_writes_what_tarfile_writes_for_every_kind_of_name(tmp_path: Path) -> None:
    long_dir = "d" * 99  # with its "/" exactly ustar's 100: the next name is too long
    write(tmp_path, {
        "a.txt": "", "b/c.py": "x" * 513, "训练/数据.csv": "1,2\n", f"{long_dir}/f": "f",
        "x" * 100: "exactly 100", "y" * 101: "one over", "deep/" + "z/" * 60 + "end": "e",
        "blocks": "b" * 1024, "caf\u00e9": "nfc",
    })
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o700)
    (tmp_path / "to-long").symlink_to("l" * 150)
    (tmp_path / "to-utf").symlink_to("训练/数据.csv")
    os.utime(tmp_path / "a.txt", (0, 0))
    assert packed(tmp_path) == _tarfile_pack(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(packed(tmp_path))) as tar:
        got = {m.name: m for m in tar.getmembers()}
    assert got["y" * 101].size == len("one over") and got["to-long"].linkname == "l" * 150
    assert got["训练/数据.csv"].isfile() and got[f"{long_dir}"].isdir()


def test_pack_refuses_a_file_that_shrinks_or_turns_into_a_link_while_packed(
        tmp_path: Path) -> None:
    write(tmp_path, {"big.bin": "x" * 4096, "small.txt": "y" * 10, "secret": "s"})
    listed = list(walk(tmp_path))  # sizes as listed: the archive's headers promise them
    (tmp_path / "big.bin").write_text("x")
    with pytest.raises(OSError, match=r"big\.bin shrank"):
        pack(tmp_path, io.BytesIO(), listed)
    (tmp_path / "big.bin").write_text("x" * 4096)
    (tmp_path / "small.txt").unlink()
    (tmp_path / "small.txt").symlink_to("secret")  # never followed: packed as listed or not
    with pytest.raises(OSError):
        pack(tmp_path, io.BytesIO(), listed)
