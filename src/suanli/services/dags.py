"""DAG jobs: a set of stages with dependencies (preprocess on CPU → train on NPU → evaluate on CPU).

Each stage is an ordinary job, placed on its own best pool by the scheduler, or with `array` a job
array (services/arrays.py: one job per index, at most N placed at once); it is queued when every
stage it depends on has completed (an array stage: every one of its tasks). A stage that fails (or
times out, or is cancelled; an array stage: any of its tasks) fails the DAG: the stages downstream
of it are never queued (they show as cancelled), the failed array's tasks not yet placed are
cancelled, and what already runs (other branches, the array's other tasks) finishes. Cancelling a
DAG cancels its stages' jobs that have not ended.

A stage reads another's outputs with an input `{"stage": NAME, "path": DIR}`: NAME must be a stage
it depends on, directly or through others, that keeps outputs (checked at submission). When the
stage is queued each such input becomes the artifact of NAME's outputs (the last run's), or for an
array stage one artifact per task, unpacked into `DIR/<index>`, by index; staging then brings them
like any input. NAME's job that completed without outputs (none matched, or not kept) fails the DAG
before the stage is queued, with the reason. Names are looked up in the DAG's own stages only.
The engine advances DAGs on every tick (`advance`).
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain.enums import DeviceKind, Policy, Precision, Role
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from ..domain.jobstate import JobState
from ..domain.task import MAX_PATHS, parse_array
from ..store import models as m
from ..store.locks import lock_dag
from . import arrays as arraysvc
from . import jobs as jobsvc
from .artifacts import artifact_row
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
    job: JobInput  # its inputs may name stages: {"stage": NAME, "path": DIR}
    depends_on: list[str]
    array: str | None = None  # "0-9%2": the stage is a job array


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


def _ancestors(stages: list[StageInput]) -> dict[str, set[str]]:
    """Each stage's dependencies, directly or through others (the graph is checked first)."""
    parents = {st.name: set(st.depends_on) for st in stages}
    out: dict[str, set[str]] = {}

    def of(name: str) -> set[str]:
        if name not in out:
            out[name] = set(parents[name])
            for parent in parents[name]:
                out[name] |= of(parent)
        return out[name]

    for st in stages:
        of(st.name)
    return out


def _check_stage_inputs(st: StageInput, by_name: dict[str, StageInput],
                        ancestors: dict[str, set[str]], tasks: dict[str, int]) -> None:
    """A stage's inputs that name stages: each one it depends on (directly or through others)
    and that keeps outputs; and no more inputs in all than a job takes once they are resolved
    (an array stage's outputs are one input per task)."""
    count = 0
    for j, item in enumerate(st.job.inputs):
        if "stage" not in item:
            count += 1
            continue
        name, where = item["stage"], f"inputs[{j}].stage"
        if name not in ancestors[st.name]:
            known = ", ".join(sorted(ancestors[st.name])) or "none"
            raise InvalidInput(f"{where}: {name!r} is not a stage this one depends on, directly "
                               f"or through others (those: {known})", field=where)
        if not by_name[name].job.outputs:
            raise InvalidInput(f"{where}: stage {name!r} keeps no outputs (give it outputs, e.g. "
                               "[out/**])", field=where)
        count += tasks[name]
    if count > MAX_PATHS:
        raise InvalidInput(f"inputs: {count} in all once the stages' outputs are counted (one per "
                           f"task of an array stage); at most {MAX_PATHS}", field="inputs")


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
    tasks: dict[str, int] = {}
    by_name = {st.name: st for st in stages}
    ancestors = _ancestors(stages)
    for i, st in enumerate(stages):
        try:
            tasks[st.name] = 1 if st.array is None else len(parse_array(st.array).indices)
            holds[st.name] = jobsvc.check_submission(p, st.job, now, actor.tenant_id,
                                                     stage_inputs=True)
            with p.db.session() as s:
                jobsvc.check_references(s, actor.tenant_id, st.job)
        except InvalidInput as exc:
            raise _in_stage(exc, i, st.name) from exc
    for i, st in enumerate(stages):  # every stage's outputs are known (checked) by now
        try:
            _check_stage_inputs(st, by_name, ancestors, tasks)
        except InvalidInput as exc:
            raise _in_stage(exc, i, st.name) from exc
    with p.db.session() as s:
        # a check only: each stage holds its own estimate when it is queued
        admit(s, actor.tenant_id, sum(holds[n] * tasks[n] for n in holds),
              what=f"the DAG's {len(stages)} stages", reserve=False)
        dag = m.Dag(tenant_id=actor.tenant_id, user_id=actor.user_id, name=name.strip(),
                    stages=[{"name": n, "depends_on": list(by_name[n].depends_on),
                             "array": by_name[n].array, "job": _job_spec(by_name[n].job)}
                            for n in order],
                    state="RUNNING", reason="submitted", submitted_at=now)
        s.add(dag)
        s.flush()
        dag_id = dag.id
    for n in order:
        if not by_name[n].depends_on:
            why = f"stage {n} of DAG {dag_id}, submitted by {actor.username}"
            with p.db.session(immediate=True) as s:
                _queue_stage(s, actor, by_name[n].job, by_name[n].array, now, hold=holds[n],
                             dag=(dag_id, n), reason=why)
    return get_dag_row(p, actor, dag_id)


def _in_stage(exc: InvalidInput, i: int, name: str) -> InvalidInput:
    """The error of stage `i`, naming it: `stage 'train': inputs[0].stage: ...`, field
    `stages[1].inputs[0].stage`."""
    where = f"stages[{i}]" + (f".{exc.field}" if exc.field else "")
    return type(exc)(f"stage {name!r}: {exc}", field=where, detail=exc.detail)


def _queue_stage(s: Session, actor: Principal, job: JobInput, array: str | None, now: datetime,
                 *, hold: int, dag: tuple[int, str], reason: str) -> None:
    """In the caller's transaction: the stage's job, or its array's tasks (all or none)."""
    if array is None:
        jobsvc.queue_job(s, actor, job, now, hold_fen=hold, dag=dag, reason=reason)
    else:
        arraysvc.queue_array(s, actor, job, parse_array(array), now, hold_fen=hold, dag=dag,
                             reason=reason)


def _stage_jobs(s: Session, dag: m.Dag, only: str | None = None) -> dict[str, list[m.Job]]:
    """Each queued stage's jobs (or stage `only`'s): its job, or its array's tasks by index."""
    arrays = {st["name"] for st in dag.stages if st.get("array")}
    q = select(m.Job).where(m.Job.dag_id == dag.id).order_by(m.Job.id)
    if only is not None:
        q = q.where(m.Job.dag_stage == only)
    out: dict[str, list[m.Job]] = {}
    for j in s.scalars(q):
        out.setdefault(j.dag_stage or "", []).append(j)
    return {n: sorted(js, key=lambda j: (j.array_index or 0, j.id)) if n in arrays else js[-1:]
            for n, js in out.items()}  # a one-job stage: its latest job


def _stage_counts(s: Session, dag_id: int) -> dict[str, dict[str, int]]:
    """How many of each queued stage's jobs are in each state (one query, however large the
    arrays: the engine asks on every pass). A one-job stage has one job: it is queued once."""
    out: dict[str, dict[str, int]] = {}
    for name, state, n in s.execute(select(m.Job.dag_stage, m.Job.state, func.count())
                                    .where(m.Job.dag_id == dag_id)
                                    .group_by(m.Job.dag_stage, m.Job.state)):
        out.setdefault(name or "", {})[state] = int(n)
    return out


def stage_state(states: dict[str, int]) -> str:
    """A stage's state from how many of its jobs (an array's tasks) are in each state: a failed
    one's (FAILED before TIMEOUT before CANCELLED); COMPLETED when all completed; RUNNING while
    some run or some completed; else PLACED or QUEUED."""
    for failed in (JobState.FAILED.value, JobState.TIMEOUT.value, JobState.CANCELLED.value):
        if states.get(failed):
            return failed
    done = states.get(JobState.COMPLETED.value, 0)
    if done == sum(states.values()):
        return JobState.COMPLETED.value
    if done or states.get(JobState.RUNNING.value):
        return JobState.RUNNING.value
    return JobState.PLACED.value if states.get(JobState.PLACED.value) else JobState.QUEUED.value


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
        states = {n: stage_state(c) for n, c in _stage_counts(s, dag.id).items()}
        user = s.get(m.User, dag.user_id)
        assert user is not None
        actor = principal_of(user)
    failed = [n for n, state in states.items() if state in FAILED_STATES]
    if failed:
        name = failed[0]
        with p.db.session() as s:
            members = {n: _stage_jobs(s, dag, n).get(n, []) for n in failed}
        bad = next(j for j in members[name] if j.state == states[name])
        task = f" (task {bad.array_index}, job {bad.id})" if bad.array_index is not None else ""
        _settle(p, dag.id, "FAILED", f"stage {name} {states[name].lower()}{task}: "
                "the stages after it are cancelled", now)
        for n in failed:  # a failed array's tasks not placed yet would run for nothing
            _cancel_queued(p, actor, members[n], f"stage {n} of DAG {dag.id} failed")
        return 0
    done = {n for n, state in states.items() if state == JobState.COMPLETED.value}
    if len(done) == len(dag.stages):
        _settle(p, dag.id, "COMPLETED", "every stage completed", now)
        return 0
    queued = 0
    for st in dag.stages:
        name = st["name"]
        if name in states or not set(st["depends_on"]) <= done:
            continue
        try:  # e.g. its deadline can no longer be met, the tenant's money ran out, or a stage
            # it reads completed without outputs
            with p.db.session() as s:
                job = _resolve_inputs(s, p, dag, _stage_job(st["job"]))
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
                _queue_stage(s, actor, job, st.get("array"), now, hold=hold, dag=(dag.id, name),
                             reason=f"stage {name} of DAG {dag.id}: "
                             f"{', '.join(st['depends_on'])} completed")
        except InvalidInput as exc:
            _settle(p, dag.id, "FAILED", f"stage {name} cannot be queued: {exc}", now)
            return queued
        queued += 1
    return queued


def _resolve_inputs(s: Session, p: Platform, dag: m.Dag, job: JobInput) -> JobInput:
    """The stage's job with each `{"stage": NAME, "path": DIR}` input replaced by the artifact
    of NAME's outputs (its job's last run's), or for an array stage by one per task at
    `DIR/<index>`. NAME is one of the same DAG's stages, completed (an ancestor: submit checked
    it); InvalidInput, naming the input, when one has no outputs to give."""
    inputs: list[dict[str, str]] = []
    array = {st["name"] for st in dag.stages if st.get("array")}
    for j, item in enumerate(job.inputs):
        name = item.get("stage")
        if name is None:
            inputs.append(item)
            continue
        path = item.get("path", "")
        for task in _stage_jobs(s, dag, name).get(name, []):
            why = _no_outputs(s, p, task)
            if why:
                what = f"task {task.array_index} (job {task.id})" if name in array \
                    else f"job {task.id}"
                raise InvalidInput(f"inputs[{j}]: stage {name}'s {what} completed without "
                                   f"outputs: {why}", field=f"inputs[{j}]")
            run = s.get(m.Run, task.current_run_id)
            assert run is not None and run.outputs_sha256 is not None
            dest = "/".join(x for x in (path, str(task.array_index)) if x) if name in array \
                else path
            inputs.append({"artifact": run.outputs_sha256, "path": dest})
    return replace(job, inputs=inputs)


def _no_outputs(s: Session, p: Platform, job: m.Job) -> str:
    """Why the job's last run gave no outputs to read ("" when it did): none kept, gone since,
    or an empty archive (nothing matched its outputs)."""
    run = s.get(m.Run, job.current_run_id) if job.current_run_id else None
    if run is None or run.outputs_sha256 is None:
        kept = [part.strip() for part in (run.reason if run else "").split(";")
                if "outputs" in part]
        return kept[-1].removeprefix("outputs: ") if kept else "none were kept"
    if artifact_row(s, job.tenant_id, run.outputs_sha256) is None:
        return "they are no longer kept"
    try:
        with p.blobs.open(job.tenant_id, run.outputs_sha256) as fh, \
                tarfile.open(fileobj=fh, mode="r|") as tar:
            empty = tar.next() is None
    except (OSError, tarfile.TarError):
        return "they cannot be read"
    return f"nothing matched its outputs ({', '.join(job.outputs or [])})" if empty else ""


def _cancel_queued(p: Platform, actor: Principal, jobs: list[m.Job], reason: str) -> None:
    for j in jobs:
        if j.state == JobState.QUEUED.value:
            try:
                jobsvc.cancel_job(p, actor, j.id, reason=reason)
            except Conflict:
                pass  # ended meanwhile


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
        open_jobs = [j.id for js in _stage_jobs(s, dag).values() for j in js
                     if not JobState(j.state).is_terminal]
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
        members = _stage_jobs(s, dag)
        stages = []
        for st in dag.stages:
            jobs = members.get(st["name"], [])
            state = stage_state(dict(Counter(j.state for j in jobs))) if jobs else \
                ("WAITING" if dag.state == "RUNNING" else "CANCELLED")
            spec = st["job"]
            one = jobs[0] if jobs and not st.get("array") else None
            stages.append({"name": st["name"], "depends_on": st["depends_on"], "state": state,
                           "job_id": one.id if one else None,
                           "array": st.get("array"),
                           "array_id": jobs[0].array_id if jobs and st.get("array") else None,
                           "jobs": [j.id for j in jobs],
                           "tasks": len(jobs) if jobs else (
                               len(parse_array(st["array"]).indices) if st.get("array") else 1),
                           "done": sum(j.state == JobState.COMPLETED.value for j in jobs),
                           "reads": sorted({str(i["stage"]) for i in spec.get("inputs") or []
                                            if isinstance(i, dict) and "stage" in i}),
                           "device": spec["device"], "units": spec["units"],
                           "center": _center_of(s, one) if one else None})
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
