"""Uploads remember what a folder packed to (artifacts.packcache, client.uploads): a second
upload of an unchanged folder reads none of it, a changed one is packed again, and a wrong
remembered digest (a poisoned or stale cache) is refused by the server and repaired."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from suanli.artifacts import pack, packcache
from suanli.client import Client, uploads

from .conftest import Server


def _packed_sha(folder: Path) -> str:
    buf = io.BytesIO()
    pack(folder, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_unchanged_folder_is_not_read_again_and_a_wrong_cache_is_repaired(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packcache, "RACY_S", 0.0)  # the folder was just written
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("print('v1')\n")
    (proj / "data.bin").write_bytes(os.urandom(3000))
    with Client(server.url, server.creds()["tenant_a"]) as c:
        first = uploads.upload_path(c, proj, kind="workdir", name="proj")
        assert first["created"] and first["sha256"] == _packed_sha(proj)
        fp = packcache.fingerprint(proj)
        assert packcache.lookup(fp) == (first["sha256"], first["size_bytes"])

        def no_packing(*_: object, **__: object) -> None:
            raise AssertionError("an unchanged folder was packed again")

        with monkeypatch.context() as mp:
            mp.setattr(uploads, "pack", no_packing)
            again = uploads.upload_path(c, proj, kind="workdir", name="proj")
        assert not again["created"] and again["sha256"] == first["sha256"]

        # The server lost it (deleted): the remembered digest is announced, the bytes packed
        # as they stream, and the server checks them.
        c.delete_artifact(first["sha256"])
        back = uploads.upload_path(c, proj, kind="workdir", name="proj")
        assert back["created"] and back["sha256"] == first["sha256"]

        # Same size, the old modification time put back: the change time still tells.
        st = (proj / "train.py").stat()
        (proj / "train.py").write_text("print('v2')\n")
        os.utime(proj / "train.py", ns=(st.st_atime_ns, st.st_mtime_ns))
        changed = uploads.upload_path(c, proj, kind="workdir", name="proj")
        assert changed["created"] and changed["sha256"] == _packed_sha(proj) != first["sha256"]

        # A cache that lies (names content the tenant does not have): the server refuses the
        # bytes announced under it, the entry is forgotten and the folder packed afresh.
        fp = packcache.fingerprint(proj)
        entry = packcache.cache_dir() / fp.key[:2] / fp.key
        entry.write_text(json.dumps({"sha256": "ab" * 32, "size": 10240}))
        fixed = uploads.upload_path(c, proj, kind="workdir", name="proj")
        assert fixed["sha256"] == changed["sha256"] and not fixed["created"]
        assert packcache.lookup(fp) == (changed["sha256"], changed["size_bytes"])
        assert "ab" * 32 not in {a["sha256"] for a in c.list_artifacts()["items"]}


def test_a_just_changed_folder_is_not_remembered(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    fp = packcache.fingerprint(tmp_path)
    assert not packcache.remember(fp, "cd" * 32, 10240)  # changed within RACY_S of now
    assert packcache.lookup(fp) is None
    later = fp.newest_change_ns + int(packcache.RACY_S * 1e9) + 1
    assert packcache.remember(fp, "cd" * 32, 10240, now_ns=later)
    assert packcache.lookup(fp) == ("cd" * 32, 10240)
    assert oct(packcache.cache_dir().stat().st_mode & 0o777) == "0o700"


def test_a_cache_folder_others_may_write_is_not_believed(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another local user able to write the cache could make an upload name an older artifact of
    the same tenant: a group- or world-writable cache folder is ignored."""
    monkeypatch.setenv("SUANLI_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "f").write_text("x")
    fp = packcache.fingerprint(work)
    assert packcache.remember(fp, "ef" * 32, 10240, now_ns=fp.newest_change_ns + 10**10)
    assert packcache.lookup(fp) == ("ef" * 32, 10240)
    (tmp_path / "cache").chmod(0o777)
    assert packcache.lookup(fp) is None
