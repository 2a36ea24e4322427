"""Staging attacked: jobs that plant links in their outputs, outputs far over the quota, crafted
work folders, forged and borrowed run tokens, and jobs reaching for the staging key or other
tenants' artifacts. Real platform, real engine passes, real local executor (sandboxed jobs)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from suanli.api.app import create_app
from suanli.domain.enums import DeviceKind
from suanli.domain.jobstate import JobState
from suanli.services import staging
from suanli.services.auth import Principal, issue_token
from suanli.services.jobs import JobInput, cancel_job, submit_job
from suanli.store import models as m

from ..conftest import World
from ..contract.stage_server import names_in, tar_of

pytestmark = pytest.mark.integration
ENDED = {JobState.COMPLETED.value, JobState.FAILED.value, JobState.CANCELLED.value,
         JobState.TIMEOUT.value}


def put_artifact(world: World, tenant_id: int, data: bytes, kind: str = "workdir") -> str:
    p = world.p
    stored = p.blobs.put(tenant_id, [data], max_size=len(data) + 1)
    with p.db.session() as s:
        if s.scalar(select(m.Artifact).where(m.Artifact.tenant_id == tenant_id,
                                             m.Artifact.sha256 == stored.sha256)) is None:
            s.add(m.Artifact(tenant_id=tenant_id, sha256=stored.sha256, size_bytes=stored.size,
                             kind=kind, name=kind, created_at=p.clock.now()))
    return stored.sha256


def submit(world: World, who: Principal, script: str, *, workdir: str | None = None,
           outputs: tuple[str, ...] = (), walltime_s: int = 60) -> int:
    job = submit_job(world.p, who, JobInput(
        name="probe", command=["sh", "-c", script], device=DeviceKind.CPU, units=1,
        walltime_s=walltime_s, workdir_sha256=workdir, outputs=list(outputs)))
    return job.id


def finish(world: World, job_id: int, timeout: float = 60) -> m.Job:
    world.drive(lambda: world.job(job_id).state in ENDED, timeout=timeout)
    return world.job(job_id)


def stdout(world: World, job_id: int) -> str:
    run = world.runs(job_id)[-1]
    path = next(world.p.home.glob(f"runs/*/{run.run_key}/stdout.log"), None)
    return path.read_text(errors="replace") if path else ""


def outputs(world: World, job_id: int) -> bytes | None:
    run = world.runs(job_id)[-1]
    if run.outputs_sha256 is None:
        return None
    job = world.job(job_id)
    with world.p.blobs.open(job.tenant_id, run.outputs_sha256) as fh:
        return fh.read()


def test_links_planted_in_outputs_bring_back_no_host_bytes(world: World) -> None:
    victim = submit(world, world.u2, "echo other-tenant-secret > secret.txt; sleep 20",
                    outputs=("secret.txt",))
    world.drive(lambda: bool(world.runs(victim)) and world.runs(victim)[-1].state == "running")
    victim_dir = next(world.p.home.glob(f"runs/*/{world.runs(victim)[-1].run_key}"))
    home = world.p.home
    script = (
        "mkdir -p out; echo mine > out/real.txt; "
        "ln -s /etc/shadow out/shadow; ln -s /etc/passwd out/passwd; "
        f"ln -s {home} out/home; ln -s {home}/suanli.db out/db; "
        f"ln -s {victim_dir}/work/work/secret.txt out/victim; ln -s {victim_dir} out/victim_dir; "
        "ln -s /etc out2; ln /etc/hostname out/hard 2>/dev/null; "
        "mkdir out3; ln -s ../../../../../../etc out3/up; true")
    jid = submit(world, world.u1, script, outputs=("out/**", "out2", "out2/*", "out3/**",
                                                   "out3/up/shadow"))
    job = finish(world, jid)
    assert job.state == JobState.COMPLETED.value, job.state_reason
    packed = outputs(world, jid)
    assert packed is not None, world.runs(jid)[-1].reason
    assert names_in(packed) == {"out/real.txt": b"mine\n"}
    shadow = Path("/etc/shadow").read_bytes()
    for secret in (shadow[:40], b"other-tenant-secret", b"SQLite format"):
        assert secret not in packed
    assert "left out" in world.runs(jid)[-1].reason
    world.drive(lambda: world.job(victim).state in ENDED, timeout=60)


def test_outputs_ten_times_the_quota_are_not_kept_and_the_bill_is_unchanged(
        world: World) -> None:
    with world.p.db.session() as s:
        tenant = s.get(m.Tenant, world.t1.id)
        assert tenant is not None
        tenant.storage_quota_bytes = 1 << 20
    before = set(world.p.home.joinpath("artifacts").rglob("*"))
    plain = submit(world, world.u1, "head -c 10485760 /dev/zero > big.bin; sleep 1")
    big = submit(world, world.u1, "head -c 10485760 /dev/zero > big.bin; sleep 1",
                 outputs=("big.bin",))
    for jid in (plain, big):
        assert finish(world, jid).state == JobState.COMPLETED.value
    run = world.runs(big)[-1]
    assert run.outputs_sha256 is None and "outputs not kept" in run.reason, run.reason
    with world.p.db.session() as s:
        assert s.scalar(select(m.Artifact).where(m.Artifact.job_id == big)) is None
    blobs = {f for f in world.p.home.joinpath("artifacts").rglob("*") if f.is_file()}
    assert blobs <= before  # nothing half-stored
    # billed as the same job without outputs: the rate and units, by its own seconds
    plain_use, big_use = world.usage(plain)[0], world.usage(big)[0]
    assert big_use.price_fen_per_unit_hour == plain_use.price_fen_per_unit_hour
    assert big_use.units == plain_use.units
    assert abs(big_use.unit_seconds - plain_use.unit_seconds) <= 5
    assert world.job(big).state == JobState.COMPLETED.value


def _crafted(kind: str, marker: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(name: str, data: bytes = b"pwned\n", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if not attrs else 0
            for k, v in attrs.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if not attrs else None)

        add("ok.txt", b"fine\n")
        if kind == "dotdot":
            add(f"../../../../../../tmp/{marker}")
        elif kind == "absolute":
            add(f"/tmp/{marker}")
        elif kind == "symlink-then-file":
            add("link", type=tarfile.SYMTYPE, linkname="/tmp")
            add(f"link/{marker}")
        elif kind == "relative-symlink-then-file":
            add("link", type=tarfile.SYMTYPE, linkname="../../../../../../../tmp")
            add(f"link/{marker}")
        elif kind == "hardlink-out":
            add("hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "device":
            add("dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-then-file",
                                  "relative-symlink-then-file", "hardlink-out", "device"])
def test_a_crafted_work_folder_fails_the_run_cleanly(world: World, kind: str) -> None:
    marker = f"suanli-pwned-{uuid.uuid4().hex}"
    sha = put_artifact(world, world.t1.id, _crafted(kind, marker))
    jid = submit(world, world.u1, "echo JOB-RAN", workdir=sha)
    job = finish(world, jid)
    assert job.state == JobState.FAILED.value
    assert "staging failed" in world.runs(jid)[-1].reason, world.runs(jid)[-1].reason
    assert "JOB-RAN" not in stdout(world, jid)
    assert not Path("/tmp", marker).exists()
    assert not list(Path("/").glob(f"*/{marker}"))
    assert Path("/etc/passwd").stat().st_nlink == 1


def test_a_job_cannot_read_the_staging_key_or_other_tenants_artifacts(world: World) -> None:
    p = world.p
    staging.run_token(p, "job0-run0", 60)  # the key exists
    key_file = p.home / "staging.key"
    other = put_artifact(world, world.t2.id, b"tenant-two-private-bytes\n", kind="upload")
    blob = p.blobs.local_path(world.t2.id, other)
    assert blob is not None
    mine = put_artifact(world, world.t1.id, tar_of({"run.sh": "echo my-own-work\n"}))
    jid = submit(world, world.u1, (
        f"sh run.sh; cat {key_file} {blob} 2>/dev/null; ls -R {p.home}/artifacts 2>/dev/null; "
        f"find / -name staging.key 2>/dev/null; find / -name {other} 2>/dev/null; true"),
        workdir=mine)
    assert finish(world, jid).state == JobState.COMPLETED.value
    out = stdout(world, jid)
    assert out == "my-own-work\n"  # nothing read, nothing listed, nothing found
    assert stat.S_IMODE(os.stat(p.home / "artifacts").st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.fixture
def api(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.p, run_engine=False)) as client:
        yield client


def test_the_run_endpoints_take_only_that_runs_own_unexpired_token(world: World,
                                                                    api: TestClient) -> None:
    p = world.p
    work = tar_of({"run.sh": "echo hi\n"})
    sha = put_artifact(world, world.t1.id, work)
    other_sha = put_artifact(world, world.t2.id, b"not yours\n", kind="upload")
    a = submit(world, world.u1, "sleep 30", workdir=sha, outputs=("x",))
    b = submit(world, world.u1, "sleep 30", workdir=sha, outputs=("x",))
    world.drive(lambda: all(world.runs(j) for j in (a, b)))
    run_a, run_b = world.runs(a)[-1], world.runs(b)[-1]
    tok_a = staging.run_token(p, run_a.run_key, run_a.walltime_s)
    tok_b = staging.run_token(p, run_b.run_key, run_b.walltime_s)
    stage_a = f"/api/v1/runs/{run_a.run_key}/stage/{sha}"
    outputs_a = f"/api/v1/runs/{run_a.run_key}/outputs"

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    r = api.get(stage_a, headers=bearer(tok_a))
    assert r.status_code == 200 and r.content == work
    tenant_token = issue_token(p, world.u1.user_id, name="t")[1]
    admin_token = issue_token(p, world.admin.user_id, name="a")[1]
    expired_at = int(p.clock.now().timestamp()) - 1
    expired = (f"slr_{expired_at}_"
               f"{staging._sign(staging.staging_key(p.home), run_a.run_key, expired_at)}")
    forged = f"slr_{expired_at + 10**6}_{'0' * 64}"
    for bad in (tok_b, tenant_token, admin_token, expired, forged, "", "slr_1_abc"):
        for method, url in (("GET", stage_a), ("PUT", outputs_a)):
            r = api.request(method, url, headers=bearer(bad) if bad else {}, content=b"x")
            assert r.status_code in (401, 403), (method, bad[:12], r.status_code, r.text)
    r = api.get(stage_a, headers=bearer(expired))
    assert "expired" in r.json()["error"]
    # another tenant's artifact, or anything not in this run's stage list: 404
    assert api.get(f"/api/v1/runs/{run_a.run_key}/stage/{other_sha}",
                   headers=bearer(tok_a)).status_code == 404
    # the run's token is no API token
    assert api.get("/api/v1/jobs", headers=bearer(tok_a)).status_code == 401
    # outputs once
    packed = tar_of({"x": "result\n"})
    r = api.put(outputs_a, headers=bearer(tok_a), content=packed)
    assert r.status_code == 201 and r.json()["kept"], r.text
    assert api.put(outputs_a, headers=bearer(tok_a), content=packed).status_code == 409
    assert world.runs(a)[-1].outputs_sha256 == r.json()["sha256"]
    with p.db.session() as s:
        art = s.scalar(select(m.Artifact).where(m.Artifact.sha256 == r.json()["sha256"]))
        assert art is not None and art.kind == "outputs" and art.job_id == a
        assert art.tenant_id == world.t1.id and art.expires_at is not None
    for j in (a, b):
        cancel_job(p, world.u1, j)
    world.drive(lambda: all(world.job(j).state in ENDED for j in (a, b)), timeout=60)
