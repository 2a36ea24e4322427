"""Array jobs (`array: 0-99%10`): one job per index, submitted and held together, at most N
placed at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Forbidden, NotFound
from ..domain.jobstate import JobState
from ..domain.task import ArraySpec
from ..scheduling import QueuedJob
from ..store import models as m
from . import idempotency
from . import jobs as jobsvc
from .auth import Principal
from .context import Platform
from .jobs import JobInput
from .ledger import admit

ACTIVE = (JobState.PLACED.value, JobState.RUNNING.value)


def submit_array(p: Platform, actor: Principal, data: JobInput, spec: ArraySpec,
                 key: idempotency.SubmissionKey | None = None) -> tuple[m.JobArray, list[int]]:
    """Check the task once, then queue one job per index (`NAME[i]`) in one transaction: the
    tenant's money must cover every task's hold, or no task is queued. With `key` (its
    Idempotency-Key) the key is recorded with the array."""
    if not actor.role.is_tenant or actor.tenant_id is None:
        raise Forbidden("jobs are submitted by tenant users (tenant_admin or tenant_user)")
    now = p.clock.now()
    hold = jobsvc.check_submission(p, data, now, actor.tenant_id)
    with p.db.session(immediate=True) as s:
        jobsvc.check_references(s, actor.tenant_id, data)
        array, ids = queue_array(s, actor, data, spec, now, hold_fen=hold,
                                 reason=f"submitted by {actor.username}")
        idempotency.record(s, actor.tenant_id, key, now, array_id=array.id)
        s.expunge(array)
    return array, ids


def queue_array(s: Session, actor: Principal, data: JobInput, spec: ArraySpec, now: datetime,
                *, hold_fen: int, reason: str, dag: tuple[int, str] | None = None,
                ) -> tuple[m.JobArray, list[int]]:
    """In the caller's transaction: the array and one queued job per index (`NAME[i]`), each
    holding `hold_fen`, if the tenant's money covers them all (else PaymentRequired, and the
    caller's transaction queues nothing). `dag`: the DAG and stage the array is."""
    assert actor.tenant_id is not None
    name = data.name.strip()
    admit(s, actor.tenant_id, hold_fen * len(spec.indices),
          what=f"the array's {len(spec.indices)} tasks", reserve=False)
    array = m.JobArray(tenant_id=actor.tenant_id, name=name, spec=spec.text or "",
                       size=len(spec.indices), max_running=spec.max_running, submitted_at=now)
    s.add(array)
    s.flush()
    ids = [jobsvc.queue_job(s, actor, replace(data, name=f"{name}[{i}]"), now,
                            hold_fen=hold_fen, array=(array.id, i), dag=dag,
                            reason=f"array {array.id} task {i}, {reason}").id
           for i in spec.indices]
    return array, ids


def array_view(p: Platform, actor: Principal, array_id: int) -> dict[str, Any]:
    """An array and how many of its tasks are in each state (a tenant's own arrays; the platform
    admin and the auditor see every one)."""
    jobsvc.require_job_reader(actor)
    with p.db.session() as s:
        array = s.get(m.JobArray, array_id)
        visible = array is not None and (
            actor.tenant_id == array.tenant_id if actor.role.is_tenant
            else actor.role in (Role.PLATFORM_ADMIN, Role.AUDITOR))
        if array is None or not visible:
            raise NotFound(f"no array {array_id}")
        rows = s.execute(select(m.Job.id, m.Job.state).where(m.Job.array_id == array_id)
                         .order_by(m.Job.array_index, m.Job.id)).all()
        return {"id": array.id, "tenant_id": array.tenant_id, "name": array.name,
                "spec": array.spec, "size": array.size, "max_running": array.max_running,
                "submitted_at": array.submitted_at,
                "states": dict(Counter(state for _, state in rows)),
                "jobs": [jid for jid, _ in rows]}


def limit_array_tasks(s: Session, queue: list[QueuedJob]) -> list[QueuedJob]:
    """The queue without the tasks an array's `%N` holds back: an array with a limit gets at
    most N tasks placed (or running) at once, its lowest indices first."""
    limited = {a: int(n or 0) for a, n in s.execute(
        select(m.JobArray.id, m.JobArray.max_running)
        .join(m.Job, m.Job.array_id == m.JobArray.id)
        .where(m.Job.state == JobState.QUEUED.value, m.JobArray.max_running.is_not(None))
        .distinct())}
    if not limited:
        return queue
    active = {a: int(n) for a, n in s.execute(
        select(m.Job.array_id, func.count())
        .where(m.Job.array_id.in_(limited), m.Job.state.in_(ACTIVE))
        .group_by(m.Job.array_id)) if a is not None}
    waiting = s.execute(select(m.Job.id, m.Job.array_id).where(
        m.Job.array_id.in_(limited), m.Job.state == JobState.QUEUED.value)
        .order_by(m.Job.array_index, m.Job.id)).all()
    room = {a: max(0, limited[a] - active.get(a, 0)) for a in limited}
    held: set[int] = set()
    for job_id, array_id in waiting:
        if array_id is None:
            continue
        if room[array_id] > 0:
            room[array_id] -= 1
        else:
            held.add(job_id)
    return [q for q in queue if q.job_id not in held] if held else queue
