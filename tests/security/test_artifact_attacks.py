"""The artifact store, attacked: another tenant's bytes, oversized and interrupted uploads over a
real socket to a real `suanli serve`, forged checksums, quotas, and crafted archives handed to
`suanli job download` (a job controls what its outputs contain)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from suanli.artifacts import BlobStore, UnsafeArchive, unpack
from suanli.config import Settings
from suanli.services import artifacts as artifact_service
from suanli.services.context import Platform
from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import kill_runs
from ..integration.conftest import BIN, Server, free_port
from ..waiting import eventually

pytestmark = pytest.mark.integration
MAX = 4 << 20  # the server's largest artifact, for these tests


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="suanli-artifact-attacks."))
    srv = Server(home, free_port(), extra_env={"SUANLI_ARTIFACT_MAX_BYTES": str(MAX)})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_files(srv: Server) -> list[Path]:
    """Every file in the server's store, the temporary ones of uploads in flight included."""
    root = srv.home / "artifacts"
    return sorted(f for f in root.rglob("*") if f.is_file()) if root.exists() else []


def put(srv: Server, data: bytes, *, who: str = "tenant_a", digest: str | None = None,
        name: str = "x") -> httpx.Response:
    with srv.api(who) as c:
        return c.put("/api/v1/artifacts", params={"name": name}, content=data,
                     headers={"X-Content-SHA256": digest or sha(data)})


def used(srv: Server, who: str = "tenant_a") -> tuple[int, int]:
    with srv.api(who) as c:
        tenant = c.get("/api/v1/users/me").json()["tenant_id"]
        q = c.get(f"/api/v1/tenants/{tenant}/storage-quota").json()
    return q["used_bytes"], q["used_count"]


def delete_all(srv: Server, who: str = "tenant_a") -> None:
    with srv.api(who) as c:
        for a in c.get("/api/v1/artifacts", params={"limit": 1000}).json()["items"]:
            c.delete(f"/api/v1/artifacts/{a['sha256']}")


def test_another_tenants_artifact_is_exactly_a_missing_one(server: Server) -> None:
    secret = b"tenant a's model weights " + uuid.uuid4().bytes
    assert put(server, secret).status_code == 201
    digest = sha(secret)
    paths = [("GET", f"/api/v1/artifacts/{digest}"), ("HEAD", f"/api/v1/artifacts/{digest}"),
             ("DELETE", f"/api/v1/artifacts/{digest}")]

    def answers() -> list[tuple[int, bytes, list[tuple[str, str]]]]:
        with server.api("tenant_b") as c:
            out = []
            for method, path in paths:
                r = c.request(method, path)
                headers = sorted((k, v) for k, v in r.headers.items() if k != "date")
                out.append((r.status_code, r.content, headers))
            return out

    while_it_exists = answers()
    assert [a[0] for a in while_it_exists] == [404, 404, 404]
    # Tenant b's delete did not delete it, nor its download read it.
    with server.api("tenant_a") as c:
        assert c.get(f"/api/v1/artifacts/{digest}").content == secret
        assert c.delete(f"/api/v1/artifacts/{digest}").status_code == 204
    assert answers() == while_it_exists  # word for word, header for header
    # Nor can tenant b reach it under its own name in the store (the path is the tenant's).
    with server.api("tenant_b") as c:
        assert c.get("/api/v1/artifacts/" + "../" * 3 + "etc/passwd").status_code == 404
        assert c.get("/api/v1/artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd").status_code == 404


def test_another_tenants_job_outputs_are_not_found(server: Server) -> None:
    job = _job_with_outputs(server, _tar([("out/result.txt", b"tenant a's result")]))
    with server.api("tenant_b") as c:
        theirs = c.get(f"/api/v1/jobs/{job}/outputs")
        missing = c.get(f"/api/v1/jobs/{job + 100000}/outputs")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == {**missing.json(), "error": f"no job {job}"}
    with server.api("tenant_a") as c:
        assert c.get(f"/api/v1/jobs/{job}/outputs").status_code == 200


def test_oversized_upload_is_413_and_leaves_nothing(server: Server) -> None:
    delete_all(server)
    before = used(server)
    data = os.urandom(MAX + 1)
    # Announced (Content-Length): refused before the body is stored; the client reads the 413.
    r = put(server, data)
    assert r.status_code == 413 and "largest artifact size" in r.json()["error"]

    # Not announced (chunked): refused when the limit is passed while streaming.
    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 256 << 10):
            yield data[i:i + (256 << 10)]

    with server.api() as c:
        r = c.put("/api/v1/artifacts", content=body())
    assert r.status_code == 413 and "nothing was kept" in r.json()["error"]
    assert store_files(server) == []
    assert used(server) == before


@pytest.mark.parametrize("chunked", [False, True])
def test_interrupted_upload_keeps_nothing(server: Server, chunked: bool) -> None:
    delete_all(server)
    before = used(server)
    token = server.creds()["tenant_a"]
    part = os.urandom(2 << 20)
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        body = f"{len(part):x}\r\n".encode() + part + b"\r\n"  # no last chunk: cut short
    else:
        framing = f"Content-Length: {3 << 20}\r\n".encode()
        body = part  # a third of it never comes
    head = (b"PUT /api/v1/artifacts?name=cut HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n" + framing + b"\r\n")

    def temporary_files() -> list[Path]:
        return [f for f in store_files(server) if ".incoming" in f.parts]

    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(head + body)
        # The server streams to a temporary file as the bytes come (never all in memory) ...
        eventually(lambda: any(f.stat().st_size >= 1 << 20 for f in temporary_files()),
                   what="the upload streaming into a temporary file")
        conn.shutdown(socket.SHUT_RDWR)  # ... and then the client is gone mid-body.
    # The server notices the disconnect and removes what it had written.
    eventually(lambda: not temporary_files() and store_files(server) == [],
               what="the interrupted upload's temporary file removed")
    assert used(server) == before
    with server.api() as c:
        assert c.get("/api/v1/artifacts").json()["total"] == 0
        assert c.get("/api/v1/health").status_code == 200  # and the server goes on


def test_forged_checksum_is_422_and_leaves_nothing(server: Server) -> None:
    delete_all(server)
    real, claimed = b"what was sent", b"what was claimed"
    r = put(server, real, digest=sha(claimed))
    assert r.status_code == 422 and r.json()["field"] == "X-Content-SHA256"
    assert store_files(server) == []
    # Claiming content the tenant has does not turn other bytes into it.
    assert put(server, claimed).status_code == 201
    r = put(server, real, digest=sha(claimed))
    assert r.status_code == 422
    with server.api() as c:
        assert c.get(f"/api/v1/artifacts/{sha(claimed)}").content == claimed
    delete_all(server)


def test_quota_exceeded_by_count_and_by_bytes(server: Server) -> None:
    delete_all(server)
    tenant = server.api().get("/api/v1/users/me").json()["tenant_id"]
    r = server.cli("tenant", "storage-quota", str(tenant), "--bytes", "3K", "--count", "2",
                   token="tenant_a")
    assert r.returncode == 1 and "platform_admin" in r.stderr and "Traceback" not in r.stderr
    r = server.cli("tenant", "storage-quota", str(tenant), "--bytes", "3K", "--count", "2",
                   token="platform_admin")
    assert r.returncode == 0, r.stderr
    assert "0 B of 3.0 KiB" in r.stdout and "0 of 2 artifacts" in r.stdout
    try:
        assert put(server, b"a" * 2000).status_code == 201
        r = put(server, b"b" * 1500)
        assert r.status_code == 413 and "quota" in r.json()["error"]
        assert put(server, b"b" * 1000).status_code == 201
        r = put(server, b"c")
        assert r.status_code == 413 and "2 artifacts" in r.json()["error"]
        assert used(server) == (3000, 2)
        assert len(store_files(server)) == 2
        bad = server.cli("tenant", "storage-quota", str(tenant), "--bytes", "lots",
                         token="platform_admin")
        assert bad.returncode == 1 and "--bytes" in bad.stderr
    finally:
        server.cli("tenant", "storage-quota", str(tenant), "--bytes", "default", "--count",
                   "default", token="platform_admin")
    delete_all(server)


# -- crafted archives -------------------------------------------------------------------------
def _tar(members: list[tuple[str, bytes] | tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                info = tarfile.TarInfo(item[0])
                info.size = len(item[1])
                tar.addfile(info, io.BytesIO(item[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info


def crafted(outside: Path) -> dict[str, bytes]:
    """Archives that try to write `outside` (a folder beside the target) or /etc."""
    tag = outside.name
    return {
        "dotdot": _tar([("ok.txt", b"fine"), (f"../{tag}/x", b"escaped")]),
        "absolute": _tar([(f"{outside}/x", b"escaped"), (f"/etc/{tag}", b"escaped")]),
        "symlink-then-file": _tar([_link("out", str(outside), tarfile.SYMTYPE),
                                   ("out/x", b"through the link")]),
        "symlink-to-etc": _tar([_link("etc", "/etc", tarfile.SYMTYPE),
                                (f"etc/{tag}", b"through the link")]),
        "relative-symlink-out": _tar([_link("up", f"../{tag}", tarfile.SYMTYPE),
                                      ("up/x", b"through the link")]),
        "hardlink-out": _tar([_link("pw", "/etc/hostname", tarfile.LNKTYPE)]),
        "hardlink-relative-out": _tar([_link("pw", f"../{tag}/victim", tarfile.LNKTYPE)]),
        "device": _tar([_device("null")]),
    }


def _nothing_escaped(outside: Path) -> None:
    tag = outside.name
    assert sorted(p.name for p in outside.iterdir()) == ["victim"], list(outside.iterdir())
    assert (outside / "victim").read_bytes() == b"do not touch"
    escaped = Path("/etc") / tag
    if escaped.exists():  # pragma: no cover - only when the defence failed
        escaped.unlink()
        pytest.fail(f"{escaped} was written")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / f"outside-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    (d / "victim").write_bytes(b"do not touch")
    return d


@pytest.mark.parametrize("case", list(crafted(Path("/tmp/x"))))
def test_unpack_refuses_crafted_archives(tmp_path: Path, outside: Path, case: str) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchive):
        unpack(io.BytesIO(crafted(outside)[case]), dest, max_bytes=10**6)
    _nothing_escaped(outside)


def _server_platform(srv: Server) -> Platform:
    settings = Settings(home=srv.home, database_url=f"sqlite:///{srv.home / 'suanli.db'}")
    return Platform(db=Database(settings.database_url), settings=settings)


def _job_with_outputs(srv: Server, tar: bytes, job_id: int | None = None) -> int:
    """A finished job of tenant_a whose outputs are `tar`: what a hostile job could make its
    outputs contain, written as the staging code writes them."""
    if job_id is None:
        r = srv.cli("job", "submit", "--wait", "-o", "json", "--", "true")
        assert r.returncode == 0, r.stderr
        job_id = int(json.loads(r.stdout)["id"])
    p = _server_platform(srv)
    try:
        with p.db.session() as s:
            tenant = s.scalar(select(m.Job.tenant_id).where(m.Job.id == job_id))
            assert tenant is not None
        stored = BlobStore(str(srv.home / "artifacts")).put(tenant, [tar], max_size=len(tar))
        with p.db.session() as s:
            artifact_service.record_outputs(s, p, tenant_id=tenant, job_id=job_id,
                                            stored=stored, now=p.clock.now())
            s.execute(update(m.Run).where(m.Run.job_id == job_id).values(
                outputs_sha256=stored.sha256, outputs_size=stored.size))
    finally:
        p.db.dispose()
    return job_id


def test_job_download_of_crafted_outputs_writes_nothing_outside(server: Server, tmp_path: Path,
                                                                outside: Path) -> None:
    job = _job_with_outputs(server, _tar([("out/fine.txt", b"fine")]))
    work = tmp_path / "cwd"
    work.mkdir()
    # First the honest case: unpacked where asked, or into ./job-N-outputs.
    r = server.cli("job", "download", str(job), "--to", str(work / "got"))
    assert r.returncode == 0, r.stderr
    assert (work / "got/out/fine.txt").read_bytes() == b"fine"
    r = subprocess.run([str(BIN / "suanli"), "job", "download", str(job)], cwd=work,
                       env=server.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (work / f"job-{job}-outputs/out/fine.txt").read_bytes() == b"fine"
    shutil.rmtree(work / f"job-{job}-outputs")
    for case, archive in crafted(outside).items():
        _job_with_outputs(server, archive, job_id=job)
        dest = work / f"dl-{case}"
        r = server.cli("job", "download", str(job), "--to", str(dest))
        assert r.returncode == 1, (case, r.stdout, r.stderr)
        assert "not unpacked" in r.stderr and "Traceback" not in r.stderr, case
        assert not dest.exists(), case  # a refused archive leaves no half folder either
        _nothing_escaped(outside)
        assert sorted(p.name for p in work.iterdir()) == ["got"], case
    # --tar keeps the archive as it is, without unpacking it.
    r = server.cli("job", "download", str(job), "--tar", str(work / "raw.tar"))
    assert r.returncode == 0 and (work / "raw.tar").read_bytes() == crafted(outside)["device"]
    _nothing_escaped(outside)
