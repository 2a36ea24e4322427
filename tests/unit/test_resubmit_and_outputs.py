"""Resubmitting a job (services.jobs.resubmit_job) and finding its packed outputs
(services.jobs.job_outputs), as the job's own tenant and as everyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from suanli.domain.enums import DeviceKind
from suanli.domain.errors import Forbidden, InvalidInput, NotFound
from suanli.domain.jobstate import JobState
from suanli.services import jobs
from suanli.services.jobs import JobInput
from suanli.store import models as m

from ..conftest import World


def submitted(world: World, **kw: object) -> m.Job:
    data = JobInput(name="task", command=["sh", "-c", "echo hi"], device=DeviceKind.CPU,
                    walltime_s=60, env={"TOKEN": "secret"}, outputs=["out/*"],
                    constraints={"arch": "x86_64"}, setup="pip install x", **kw)  # type: ignore[arg-type]
    return jobs.submit_job(world.p, world.u1, data)


def test_resubmit_is_the_same_task_as_a_new_job(world: World) -> None:
    old = submitted(world)
    new = jobs.resubmit_job(world.p, world.u1, old.id)
    assert new.id != old.id and new.state == JobState.QUEUED.value
    keep = ("name", "command", "device_kind", "units", "walltime_s", "policy", "env", "outputs",
            "constraints", "setup", "tenant_id")
    assert {k: getattr(new, k) for k in keep} == {k: getattr(old, k) for k in keep}
    history = jobs.job_history(world.p, world.u1, new.id)
    assert history[0].reason == f"resubmitted from job {old.id} by u1"
    assert new.hold_fen > 0  # admitted against the tenant's money like any submission


def test_only_the_jobs_own_tenant_resubmits_it(world: World) -> None:
    old = submitted(world)
    with pytest.raises(NotFound):  # another tenant: not even that it exists
        jobs.resubmit_job(world.p, world.u2, old.id)
    for who in (world.admin, world.op_alpha, world.reviewer):  # they do not submit jobs
        with pytest.raises(Forbidden):
            jobs.resubmit_job(world.p, who, old.id)
    with pytest.raises(NotFound):
        jobs.resubmit_job(world.p, world.u1, 999_999)
    assert jobs.list_jobs(world.p, world.u1).total == 1


def test_a_resubmission_passes_the_checks_of_a_new_one(world: World) -> None:
    old = submitted(world, deadline=world.p.clock.now() + timedelta(hours=1))
    with world.p.db.session() as s:  # the deadline has passed since
        row = s.get(m.Job, old.id)
        assert row is not None
        row.deadline = world.p.clock.now() - timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="deadline is in the past"):
        jobs.resubmit_job(world.p, world.u1, old.id)


def test_outputs_are_found_for_those_who_may_read_them(world: World) -> None:
    job = submitted(world)
    with pytest.raises(NotFound, match=f"job {job.id} has no outputs"):
        jobs.job_outputs(world.p, world.u1, job.id)
    world.drive(lambda: JobState(world.job(job.id).state).is_terminal)
    run = world.runs(job.id)[-1]
    stored = world.p.blobs.put(job.tenant_id, [b"tar bytes"], max_size=1 << 20)
    with world.p.db.session() as s:
        row = s.get(m.Run, run.id)
        assert row is not None
        row.outputs_sha256, row.outputs_size = stored.sha256, stored.size
    got = jobs.job_outputs(world.p, world.u1, job.id)
    assert (got.tenant_id, got.sha256, got.size, got.run_id) == (job.tenant_id, stored.sha256, 9, run.id)
    assert jobs.job_outputs(world.p, world.admin, job.id).sha256 == stored.sha256
    with pytest.raises(NotFound):  # another tenant
        jobs.job_outputs(world.p, world.u2, job.id)
    with pytest.raises(Forbidden):  # a reviewer reads no jobs
        jobs.job_outputs(world.p, world.reviewer, job.id)
    # the operator of the center that ran it sees them; of another center, not even the job
    if run.center_id == world.alpha.id:
        assert jobs.job_outputs(world.p, world.op_alpha, job.id).sha256 == stored.sha256
    else:
        with pytest.raises(NotFound):
            jobs.job_outputs(world.p, world.op_alpha, job.id)
