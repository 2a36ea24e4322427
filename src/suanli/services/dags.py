"""DAG jobs: a set of stages with dependencies (preprocess on CPU → train on NPU → evaluate on CPU).

Each stage is an ordinary job, placed on its own best pool by the scheduler; it is queued when
every stage it depends on has completed. A stage that fails (or times out, or is cancelled) fails
the DAG: the stages downstream of it are never queued (they show as cancelled); stages already
running on other branches finish. Cancelling a DAG cancels its stages that have not ended.
The engine advances DAGs on every tick (`advance`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.enums import DeviceKind, Policy, Precision, Role
from ..domain.errors import Forbidden, InvalidInput, NotFound
from ..domain.jobstate import JobState
from ..store import models as m
from ..store.locks import lock_dag
from . import jobs as jobsvc
from .auth import Principal, principal_of
from .context import Platform
from .jobs import JobInput
from .ledger import admit

STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_STAGES = 100
FAILED_STATES = {JobState.FAILED.value, JobState.CANCELLED.value, JobState.TIMEOUT.value}


@dataclass
class StageInput:
    name: str
    job: JobInput
    depends_on: list[str]


def _order(stages: list[StageInput]) -> list[str]:
    """Stage names in a dependency order; refuses unknown parents and cycles."""
    names = [st.name for st in stages]
    for i, st in enumerate(stages):
        field = f"stages[{i}]"
        if not STAGE_NAME.match(st.name):
            raise InvalidInput("a stage name is 1-64 letters, digits, '_', '.' or '-'", field=f"{field}.name")
        if names.count(st.name) > 1:
            raise InvalidInput(f"two stages are named {st.name!r}", field=f"{field}.name")
        for parent in st.depends_on:
            if parent == st.name:
                raise InvalidInput(f"stage {st.name!r} depends on itself", field=f"{field}.depends_on")
            if parent not in names:
                raise InvalidInput(f"stage {st.name!r} depends on {parent!r}, which is not a stage",
                                   field=f"{field}.depends_on")
    parents = {st.name: set(st.depends_on) for st in stages}
    done: list[str] = []
    while len(done) < len(stages):
        ready = [n for n in names if n not in done and parents[n] <= set(done)]
        if not ready:
            stuck = sorted(n for n in names if n not in done)
            raise InvalidInput(f"the stages' dependencies form a cycle among {stuck}", field="stages")
        done.extend(ready)
    return done


def _stage_job(spec: dict[str, Any]) -> JobInput:
    """A stage's stored job fields back into a JobInput."""
    data = dict(spec)
    data["device"] = DeviceKind(data["device"])
    data["precision"] = Precision(data["precision"])
    data["policy"] = Policy(data["policy"])
    if data.get("deadline"):
        data["deadline"] = datetime.fromisoformat(data["deadline"])
    known = {f.name for f in fields(JobInput)}
    return JobInput(**{k: v for k, v in data.items() if k in known})


def _job_spec(job: JobInput) -> dict[str, Any]:
    out: dict[str, Any] = {f.name: getattr(job, f.name) for f in fields(JobInput)}
    out["device"], out["precision"], out["policy"] = job.device.value, job.precision.value, job.policy.value
    out["deadline"] = job.deadline.isoformat() if job.deadline else None
    return out


def submit_dag(p: Platform, actor: Principal, name: str, stages: list[StageInput]) -> m.Dag:
    """Check every stage (fields, a pool that could run it, budget, deadline) and the graph, then
    queue the stages that depend on nothing."""
    if not actor.role.is_tenant or actor.tenant_id is None:
        raise Forbidden("DAG jobs are submitted by tenant users (tenant_admin or tenant_user)")
    if not name.strip() or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters", field="name")
    if not stages or len(stages) > MAX_STAGES:
        raise InvalidInput(f"a DAG has 1-{MAX_STAGES} stages", field="stages")
    order = _order(stages)
    now = p.clock.now()
    holds: dict[str, int] = {}
    for i, st in enumerate(stages):
        try:
            holds[st.name] = jobsvc.check_submission(p, st.job, now, actor.tenant_id)
            with p.db.session() as s:
                jobsvc.check_references(s, actor.tenant_id, st.job)
        except InvalidInput as exc:
            where = f"stages[{i}]" + (f".{exc.field}" if exc.field else "")
            raise type(exc)(f"stage {st.name!r}: {exc}", field=where, detail=exc.detail) from exc
    by_name = {st.name: st for st in stages}
    with p.db.session() as s:
        # a check only: each stage holds its own estimate when it is queued
        admit(s, actor.tenant_id, sum(holds.values()), what=f"the DAG's {len(stages)} stages",
              reserve=False)
        dag = m.Dag(tenant_id=actor.tenant_id, user_id=actor.user_id, name=name.strip(),
                    stages=[{"name": n, "depends_on": list(by_name[n].depends_on),
                             "job": _job_spec(by_name[n].job)} for n in order],
                    state="RUNNING", reason="submitted", submitted_at=now)
        s.add(dag)
        s.flush()
        dag_id = dag.id
    for n in order:
        if not by_name[n].depends_on:
            jobsvc.insert_job(p, actor, by_name[n].job, now, hold_fen=holds[n], dag=(dag_id, n),
                              reason=f"stage {n} of DAG {dag_id}, submitted by {actor.username}")
    return get_dag_row(p, actor, dag_id)


def _stage_jobs(s: Session, dag_id: int) -> dict[str, m.Job]:
    rows = s.scalars(select(m.Job).where(m.Job.dag_id == dag_id).order_by(m.Job.id))
    return {j.dag_stage or "": j for j in rows}  # the latest job per stage


def advance(p: Platform) -> int:
    """Queue the stages whose parents have all completed; settle DAGs whose stages ended.
    Returns how many stage jobs were queued."""
    queued = 0
    with p.db.session() as s:
        running = list(s.scalars(select(m.Dag).where(m.Dag.state == "RUNNING")))
    for dag in running:
        queued += _advance_one(p, dag)
    return queued


def _advance_one(p: Platform, dag: m.Dag) -> int:
    now = p.clock.now()
    with p.db.session() as s:
        jobs = {n: (j.state, j.id) for n, j in _stage_jobs(s, dag.id).items()}
        user = s.get(m.User, dag.user_id)
        assert user is not None
        actor = principal_of(user)
    failed = [n for n, (state, _) in jobs.items() if state in FAILED_STATES]
    if failed:
        _settle(p, dag.id, "FAILED", f"stage {failed[0]} {jobs[failed[0]][0].lower()}: "
                "the stages after it are cancelled", now)
        return 0
    done = {n for n, (state, _) in jobs.items() if state == JobState.COMPLETED.value}
    if len(done) == len(dag.stages):
        _settle(p, dag.id, "COMPLETED", "every stage completed", now)
        return 0
    queued = 0
    for st in dag.stages:
        name = st["name"]
        if name in jobs or not set(st["depends_on"]) <= done:
            continue
        job = _stage_job(st["job"])
        try:  # e.g. its deadline can no longer be met, or the tenant's money ran out
            hold = jobsvc.check_submission(p, job, now, dag.tenant_id)
            # Queued only while the DAG still runs and the stage is not queued yet, in one
            # serialised step with that check: a cancel of the DAG may be racing us.
            with p.db.session(immediate=True) as s:
                locked = lock_dag(s, dag.id)
                if locked is None or locked.state != "RUNNING":
                    return queued
                if s.scalar(select(m.Job.id).where(m.Job.dag_id == dag.id,
                                                   m.Job.dag_stage == name)) is not None:
                    continue
                jobsvc.queue_job(s, actor, job, now, hold_fen=hold, dag=(dag.id, name),
                                 reason=f"stage {name} of DAG {dag.id}: "
                                 f"{', '.join(st['depends_on'])} completed")
        except InvalidInput as exc:
            _settle(p, dag.id, "FAILED", f"stage {name} cannot be queued: {exc}", now)
            return queued
        queued += 1
    return queued


def _settle(p: Platform, dag_id: int, state: str, reason: str, now: datetime) -> None:
    with p.db.session(immediate=True) as s:
        dag = lock_dag(s, dag_id)
        if dag is not None and dag.state == "RUNNING":
            dag.state, dag.reason, dag.finished_at = state, reason[:500], now


def cancel_dag(p: Platform, actor: Principal, dag_id: int) -> m.Dag:
    """Cancel a running DAG: its stages that have not ended are cancelled, none is queued after."""
    dag = get_dag_row(p, actor, dag_id)
    if actor.role is not Role.PLATFORM_ADMIN and not actor.role.is_tenant:
        raise Forbidden("only the tenant or the platform admin cancels a DAG")
    if dag.state != "RUNNING":
        return dag
    now = p.clock.now()
    _settle(p, dag_id, "CANCELLED", f"cancelled by {actor.username}", now)
    with p.db.session() as s:
        open_jobs = [j.id for j in _stage_jobs(s, dag_id).values() if not JobState(j.state).is_terminal]
    for jid in open_jobs:
        jobsvc.cancel_job(p, actor, jid)
    return get_dag_row(p, actor, dag_id)


def get_dag_row(p: Platform, actor: Principal, dag_id: int) -> m.Dag:
    jobsvc.require_job_reader(actor)
    with p.db.session() as s:
        dag = s.get(m.Dag, dag_id)
        visible = dag is not None and (actor.role.is_platform or
                                       (actor.role.is_tenant and actor.tenant_id == dag.tenant_id))
        if dag is None or not visible:
            raise NotFound(f"no DAG {dag_id}")
        return dag


def dag_view(p: Platform, actor: Principal, dag_id: int) -> dict[str, Any]:
    """The DAG with every stage's state: its job's state, or `WAITING` (parents not done) or
    `CANCELLED` (never queued: the DAG failed or was cancelled first)."""
    dag = get_dag_row(p, actor, dag_id)
    with p.db.session() as s:
        jobs = _stage_jobs(s, dag_id)
        stages = []
        for st in dag.stages:
            job = jobs.get(st["name"])
            state = job.state if job else ("WAITING" if dag.state == "RUNNING" else "CANCELLED")
            spec = st["job"]
            stages.append({"name": st["name"], "depends_on": st["depends_on"], "state": state,
                           "job_id": job.id if job else None,
                           "device": spec["device"], "units": spec["units"],
                           "center": _center_of(s, job) if job else None})
    return {"id": dag.id, "tenant_id": dag.tenant_id, "user_id": dag.user_id, "name": dag.name,
            "state": dag.state, "reason": dag.reason, "submitted_at": dag.submitted_at,
            "finished_at": dag.finished_at, "stages": stages}


def _center_of(s: Session, job: m.Job) -> str | None:
    if job.current_run_id is None:
        return None
    return s.scalar(select(m.Center.slug).join(m.Run, m.Run.center_id == m.Center.id)
                    .where(m.Run.id == job.current_run_id))


def list_dags(p: Platform, actor: Principal, *, limit: int = 50, offset: int = 0) -> tuple[list[m.Dag], int]:
    jobsvc.require_job_reader(actor)
    with p.db.session() as s:
        q = select(m.Dag)
        if actor.role.is_tenant:
            q = q.where(m.Dag.tenant_id == actor.tenant_id)
        elif not actor.role.is_platform:
            raise Forbidden("DAGs are listed by tenants and the platform")
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(s.scalars(q.order_by(m.Dag.id.desc()).limit(limit).offset(offset)))
        return rows, total
