"""Bring your own work through a real `suanli serve`, onto a real Slurm cluster and a real Ray
head: the batch script / the Ray package fetch the work folder from suanli's run endpoint with
the run's token, and the outputs come back through it. (The job and its artifact are put in
through the services: the upload route and the job fields belong to their own parts.)"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from suanli.config import Settings
from suanli.domain.enums import DeviceKind
from suanli.services.auth import principal_of
from suanli.services.context import Platform
from suanli.services.dags import StageInput, submit_dag
from suanli.services.jobs import JobInput, submit_job
from suanli.store import models as m
from suanli.store.db import Database

from ..contract.stage_server import names_in, tar_of
from ..waiting import eventually
from .conftest import Server

pytestmark = pytest.mark.integration


@pytest.fixture
def beside(server: Server) -> Iterator[Platform]:
    """The server's own database and artifact store, opened beside it."""
    settings = Settings(home=server.home, database_url=f"sqlite:///{server.home / 'suanli.db'}")
    db = Database(settings.database_url)
    yield Platform(db=db, settings=settings)
    db.dispose()


def _job(p: Platform, device: DeviceKind, model: str, district: str, units: int) -> int:
    with p.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == "alice"))
        assert user is not None and user.tenant_id is not None
        tenant_id, who = user.tenant_id, principal_of(user)
    work = tar_of({"train.sh": "echo training on $(cat data/set.txt) lr=$LR\n"
                               "mkdir -p results; echo weights > results/model.txt\n",
                   "data/": "data/", "data/set.txt": "mnist\n"})
    stored = p.blobs.put(tenant_id, [work], max_size=1 << 20)
    with p.db.session() as s:
        s.add(m.Artifact(tenant_id=tenant_id, sha256=stored.sha256, size_bytes=stored.size,
                         kind="workdir", name="work", created_at=p.clock.now()))
    job = submit_job(p, who, JobInput(
        name="byow", command=["sh", "-c", "sh train.sh; exit 4"], device=device, model=model,
        units=units, district=district, walltime_s=300, env={"LR": "0.01"},
        workdir_sha256=stored.sha256, outputs=["results/**"]))
    return job.id


def _check(server: Server, p: Platform, jid: int, center: str) -> None:
    def ended() -> dict[str, object] | None:
        with server.api() as c:
            job: dict[str, object] = c.get(f"/api/v1/jobs/{jid}").json()
        return job if job["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

    job = eventually(ended, timeout=180, what=f"job {jid} ended")
    assert job["state"] == "FAILED" and job["exit_code"] == 4, (job["state_reason"], job["runs"])
    assert job["center"] == center, job
    with server.api() as c:
        out = c.get(f"/api/v1/jobs/{jid}/logs").json()["data"]
    assert "training on mnist lr=0.01" in out, out

    def outputs() -> bytes | None:
        with p.db.session() as s:
            run = s.scalars(select(m.Run).where(m.Run.job_id == jid).order_by(m.Run.id)).all()[-1]
            tenant = s.get(m.Job, jid).tenant_id  # type: ignore[union-attr]
            if run.outputs_sha256 is None:
                return None
            with p.blobs.open(tenant, run.outputs_sha256) as fh:
                return bytes(fh.read())

    packed = eventually(outputs, timeout=60, what="the outputs stored")
    assert names_in(packed) == {"results/model.txt": b"weights\n"}
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        assert all(not t.issym() for t in tar)


def test_work_goes_to_slurm_and_outputs_come_back(server: Server, beside: Platform,
                                                  slurm: dict[str, str]) -> None:
    state = Path(slurm["SLURM_STATE_DIR"])
    r = server.cli("center", "add", "--connector", "slurm",
                   "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                   "--config", f"output_dir={state / 'jobs' / 'staging'}", "--slug", "hpc-stage",
                   "--name-zh", "测试超算", "--name-en", "Test HPC", "--district", "市南区",
                   "--price-fen", "7", "-o", "json", token="platform_admin")
    assert r.returncode == 0, r.stderr
    jid = _job(beside, DeviceKind.GPU, "fake", "市南区", 1)
    _check(server, beside, jid, "hpc-stage")


def test_a_dag_stage_on_slurm_reads_the_outputs_of_the_stage_before(
        server: Server, beside: Platform, slurm: dict[str, str]) -> None:
    """Stage outputs as the next stage's input on a real Slurm: the batch script PUTs a
    stage's outputs before its job ends, so they are there when suanli sees it complete and
    queues the next stage, whose batch script fetches them (issue 16)."""
    state = Path(slurm["SLURM_STATE_DIR"])
    r = server.cli("center", "add", "--connector", "slurm",
                   "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                   "--config", f"output_dir={state / 'jobs' / 'dag'}", "--slug", "hpc-dag",
                   "--name-zh", "测试超算", "--name-en", "Test HPC", "--district", "市南区",
                   "--price-fen", "7", "-o", "json", token="platform_admin")
    assert r.returncode == 0, r.stderr
    with beside.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == "alice"))
        assert user is not None
        who = principal_of(user)

    def stage(name: str, script: str, **kw: object) -> JobInput:
        return JobInput(name=name, command=["sh", "-c", script], device=DeviceKind.GPU,
                        model="fake", district="市南区", walltime_s=300, **kw)  # type: ignore[arg-type]

    dag = submit_dag(beside, who, "on-slurm", [
        StageInput("make", stage("make", "mkdir -p out; echo made-on-slurm > out/thing.txt",
                                 outputs=["out/**"]), []),
        StageInput("use", stage("use", "cat got/out/thing.txt",
                                inputs=[{"stage": "make", "path": "got"}]), ["make"]),
    ])

    def ended() -> dict[str, object] | None:
        with server.api() as c:
            view: dict[str, object] = c.get(f"/api/v1/dags/{dag.id}").json()
        return view if view["state"] != "RUNNING" else None

    view = eventually(ended, timeout=240, what=f"DAG {dag.id} ended")
    assert view["state"] == "COMPLETED", view
    stages = {st["name"]: st for st in view["stages"]}  # type: ignore[attr-defined]
    assert {st["center"] for st in stages.values()} == {"hpc-dag"}
    with server.api() as c:
        out = c.get(f"/api/v1/jobs/{stages['use']['job_id']}/logs").json()["data"]
    assert out == "made-on-slurm\n", out


def test_work_goes_to_ray_and_outputs_come_back(server: Server, beside: Platform,
                                                ray: dict[str, str]) -> None:
    r = server.cli("center", "add", "--connector", "ray",
                   "--config", f"url={ray['RAY_DASHBOARD_URL']}", "--slug", "ai-stage",
                   "--name-zh", "测试智算", "--name-en", "Test Ray", "--kind", "ai",
                   "--district", "崂山区", "--price-fen", "900", "-o", "json",
                   token="platform_admin")
    assert r.returncode == 0, r.stderr
    jid = _job(beside, DeviceKind.NPU, "Ray NPU", "崂山区", 2)
    _check(server, beside, jid, "ai-stage")
    assert json.loads(server.cli("job", "list", "-o", "json").stdout)["items"]
