"""Jobs: submission (with feasibility check), visibility, cancel, logs, placement explanations."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..connectors import Connector, overrun_s
from ..domain.enums import DeviceKind, Policy, Precision, Role
from ..domain.errors import Conflict, ConnectorError, Forbidden, Infeasible, InvalidInput, NotFound
from ..domain.jobstate import JobState, check_transition
from ..domain.model import JobRequirements, Resources
from ..domain.money import yuan
from ..domain.task import (
    MAX_PATHS,
    Constraints,
    check_constraints,
    check_env,
    check_name,
    check_relative_path,
    check_script,
)
from ..scheduling import Decision, explain_job, static_reasons
from ..store import models as m
from . import idempotency, peer_quotes
from .auth import Principal, hide_other_tenant
from .context import Platform
from .ledger import admit
from .snapshot import bytes_to_move, peer_rule, pool_facts, pool_states, requirements_of

MAX_COMMAND_ARGS = 1000
MAX_PRIORITY = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class JobInput:
    name: str
    command: list[str]
    device: DeviceKind
    units: int = 1
    nodes: int = 1
    model: str | None = None
    memory_gb: int | None = None
    walltime_s: int = 3600
    precision: Precision = Precision.FP32
    policy: Policy = Policy.BALANCED
    priority: int = 0
    domestic_only: bool = False
    district: str | None = None
    deadline: datetime | None = None
    budget_fen: int | None = None
    requeue: bool = True
    env: dict[str, str] = field(default_factory=dict)
    data_site: str | None = None
    data_gb: float | None = None
    # A task's own work (see domain/task.py and the jobs table): stored with the job.
    setup: str | None = None
    workdir_sha256: str | None = None
    inputs: list[dict[str, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    constraints: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    # Where it may run (kept in `constraints`): only at these centers or `center/pool`s, never
    # at those (None: as `constraints` says).
    centers: list[str] | None = None
    exclude_centers: list[str] | None = None

    def requirements(self) -> JobRequirements:
        return JobRequirements(
            resources=Resources(self.device, self.units, self.nodes, self.model, self.memory_gb),
            walltime_s=self.walltime_s,
            precision=self.precision,
            policy=self.policy,
            priority=self.priority,
            domestic_only=self.domestic_only,
            district=self.district,
            deadline=self.deadline,
            budget_fen=self.budget_fen,
            data_site=self.data_site,
            data_gb=self.data_gb,
            constraints=Constraints.from_dict(self.constraints),
            environment=self.environment,
        )


def _validate(data: JobInput, now: datetime, *, stage_inputs: bool = False) -> None:
    if not data.name.strip() or len(data.name) > 200:
        raise InvalidInput("name must be 1-200 characters", field="name")
    if not data.command or not all(isinstance(a, str) for a in data.command):
        raise InvalidInput("command must be a non-empty list of strings", field="command")
    if len(data.command) > MAX_COMMAND_ARGS or not data.command[0]:
        raise InvalidInput("command is empty or too long", field="command")
    if data.units < 1:
        raise InvalidInput("units must be at least 1", field="resources.units")
    if data.nodes < 1:
        raise InvalidInput("nodes must be at least 1", field="resources.nodes")
    if data.memory_gb is not None and data.memory_gb < 1:
        raise InvalidInput("memory_gb must be at least 1", field="resources.memory_gb")
    if data.walltime_s < 1:
        raise InvalidInput("walltime_s must be at least 1 second", field="walltime_s")
    if abs(data.priority) > MAX_PRIORITY:
        raise InvalidInput(f"priority must be within ±{MAX_PRIORITY}", field="priority")
    if data.budget_fen is not None and data.budget_fen < 0:
        raise InvalidInput("budget_fen must not be negative", field="budget_fen")
    if data.deadline is not None:
        if data.deadline.tzinfo is None:
            raise InvalidInput("deadline needs a timezone (e.g. ...Z)", field="deadline")
        if data.deadline <= now:
            raise InvalidInput("deadline is in the past", field="deadline")
    _validate_task(data, stage_inputs=stage_inputs)


def _validate_task(data: JobInput, *, stage_inputs: bool = False) -> None:
    """A task's own fields (domain/task.py), normalised in place: a clear error naming the field.
    With `stage_inputs` (a DAG stage) an input may also be `{"stage": NAME, "path": DIR}`: another
    stage's outputs, which services/dags.py checks and resolves to artifacts."""
    data.env = check_env(data.env or {})
    data.setup = check_script(data.setup, field_name="setup")
    if data.workdir_sha256 is not None and not _SHA256.fullmatch(data.workdir_sha256):
        raise InvalidInput("workdir: the SHA-256 of an uploaded work folder (64 lowercase hex "
                           "digits)", field="workdir")
    if not isinstance(data.inputs, list) or len(data.inputs) > MAX_PATHS:
        raise InvalidInput(f"inputs: a list of at most {MAX_PATHS} items", field="inputs")
    inputs: list[dict[str, str]] = []
    for i, item in enumerate(data.inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: a map with artifact or dataset, and path", field=where)
        if "stage" in item and not stage_inputs:
            raise InvalidInput(f"{where}.stage: only a stage of a DAG reads another stage's "
                               "outputs", field=f"{where}.stage")
        sources = ("artifact", "dataset", "stage") if stage_inputs else ("artifact", "dataset")
        unknown = set(item) - {*sources, "path"}
        if unknown:
            raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                               f"(known: {', '.join(sorted({*sources, 'path'}))})", field=where)
        if sum(k in item for k in sources) != 1:
            raise InvalidInput(f"{where}: give either artifact (a SHA-256) or dataset (a name)"
                               + (" or stage (a stage it depends on)" if stage_inputs else ""),
                               field=where)
        path = check_relative_path(item.get("path", ""), field_name=f"{where}.path")
        if "stage" in item:
            name = item["stage"]
            if not isinstance(name, str) or not name or len(name) > 64:
                raise InvalidInput(f"{where}.stage: the name of a stage, not {name!r}",
                                   field=f"{where}.stage")
            inputs.append({"stage": name, "path": path})
        elif "artifact" in item:
            sha = item["artifact"]
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                raise InvalidInput(f"{where}.artifact: {sha!r} is not a SHA-256 (64 lowercase hex "
                                   "digits)", field=f"{where}.artifact")
            inputs.append({"artifact": sha, "path": path})
        else:
            inputs.append({"dataset": check_name(item["dataset"], field_name=f"{where}.dataset"),
                           "path": path})
    data.inputs = inputs
    if not isinstance(data.outputs, list) or len(data.outputs) > MAX_PATHS:
        raise InvalidInput(f"outputs: a list of at most {MAX_PATHS} paths or globs",
                           field="outputs")
    outputs = [check_relative_path(o, field_name=f"outputs[{i}]", glob=True)
               for i, o in enumerate(data.outputs)]
    if "" in outputs:
        raise InvalidInput("outputs: name paths inside the work folder, not the folder itself "
                           "(use '**' for everything)", field="outputs")
    data.outputs = outputs


def check_references(s: Session, tenant_id: int, data: JobInput) -> None:
    """The work folder and inputs a job names must be the tenant's own: another tenant's
    artifact is "not found", exactly like one that does not exist."""
    shas = [("workdir", data.workdir_sha256)] if data.workdir_sha256 else []
    shas += [(f"inputs[{i}].artifact", it["artifact"]) for i, it in enumerate(data.inputs)
             if "artifact" in it]
    if shas:
        have = set(s.scalars(select(m.Artifact.sha256).where(
            m.Artifact.tenant_id == tenant_id, m.Artifact.sha256.in_({sha for _, sha in shas}))))
        for where, sha in shas:
            if sha not in have:
                raise InvalidInput(f"{where}: artifact {sha[:12]}… not found (upload it first: "
                                   "PUT /api/v1/artifacts)", field=where)
    check_datasets(s, tenant_id, data)


def check_datasets(s: Session, tenant_id: int, data: JobInput) -> None:
    """The datasets a job names must be the tenant's own (another tenant's: "not found")."""
    names = [(f"inputs[{i}].dataset", it["dataset"]) for i, it in enumerate(data.inputs)
             if "dataset" in it]
    if names:
        known = set(s.scalars(select(m.Dataset.name).where(
            m.Dataset.tenant_id == tenant_id, m.Dataset.name.in_({n for _, n in names}))))
        for where, name in names:
            if name not in known:
                raise InvalidInput(f"{where}: dataset {name!r} not found (register it first: "
                                   "suanli data add)", field=where)


def _check_pool_needs(data: JobInput) -> None:
    """The job's `constraints` and `environment` are well formed (whether a pool offers them is
    the scheduler's question: `static_reasons`)."""
    merged = dict(data.constraints or {})
    if data.centers is not None:
        merged["centers"] = data.centers
    if data.exclude_centers is not None:
        merged["exclude_centers"] = data.exclude_centers
    data.constraints = check_constraints(merged or None).as_dict()
    if data.environment is not None:
        data.environment = check_name(data.environment, field_name="environment")


def center_connectors(p: Platform) -> dict[int, Connector | None]:
    """Each center's connector (None for one that cannot be built: it gets the defaults)."""

    def build() -> dict[int, Connector | None]:
        with p.db.session() as s:
            centers = list(s.scalars(select(m.Center)))
        out: dict[int, Connector | None] = {}
        for c in centers:
            try:
                out[c.id] = p.connector_for(c)
            except Exception:  # a broken configuration must not stop submissions
                out[c.id] = None
        return out

    return p.cached("center_connectors", build)


def _largest(req: JobRequirements, pools: list[Any]) -> str:
    """For a job too big for every pool of its device (and model, when it names one): '; the
    largest npu pool is qd-ai/ascend-910b: 40 nodes × 8 units = 320 npu' — what it could ask for
    at most. Empty when size is not what stops it."""
    res = req.resources
    same = [st for st in pools if st.spec.device_kind == res.device
            and (not res.model or res.model.lower() == st.spec.device_model.lower())]
    what = f"{res.model} {res.device}" if res.model else str(res.device)
    if not same:
        return f"; the network has no {what} pool"
    if any(res.units <= st.spec.nodes * st.spec.units_per_node and res.nodes <= st.spec.nodes
           and res.units_per_node <= st.spec.units_per_node for st in same):
        return ""
    big = max(same, key=lambda st: (st.spec.nodes * st.spec.units_per_node, st.spec.units_per_node))
    sp = big.spec
    text = (f"; the largest {what} pool is {big.label}: {sp.nodes} nodes × {sp.units_per_node} "
            f"units = {sp.nodes * sp.units_per_node} {res.device}")
    widest = max(same, key=lambda st: st.spec.units_per_node)
    if widest.spec.units_per_node > sp.units_per_node:
        text += f" (most per node: {widest.label}, {widest.spec.units_per_node})"
    return text


def cached_pool_facts(p: Platform) -> list[Any]:
    """Every pool without its load (`snapshot.pool_facts`), cached with the topology."""
    def build() -> list[Any]:
        with p.db.session() as s:
            return pool_facts(s)

    return p.cached("pool_facts", build)


def check_feasible(p: Platform, req: JobRequirements) -> int:
    """Raises Infeasible (with per-pool reasons) when no pool of the network could ever run the
    job; else returns the most it may cost: its walltime plus the grace its center's backend
    allows past it before the kill (`connectors.overrun_s`), on the priciest pool that could run
    it, capped by its budget. Admission holds that against the tenant's money, and billing never
    charges the job more than it held."""
    report: list[dict[str, Any]] = []
    worst = 0
    connectors = center_connectors(p)
    facts = cached_pool_facts(p)
    _check_places(req, facts)
    for st in facts:
        reasons = static_reasons(req, st)
        report.append({"pool_id": st.pool_id, "pool": st.label, "reasons": reasons})
        if not reasons:
            seconds = req.walltime_s + overrun_s(connectors.get(st.center_id), req.walltime_s)
            cost = -(-req.resources.units * seconds * st.spec.price_fen_per_unit_hour // 3600)
            worst = max(worst, cost)
    if not any(not r["reasons"] for r in report):
        why, field = _nowhere(req, facts)
        if not why:
            why, field = _datasets_nowhere(req, facts)
        if not why:
            why, field = _places_nowhere(req, facts)
        raise Infeasible(
            "no pool in the network can ever run this job"
            + (f": {why}" if why else _largest(req, facts)),
            field=field, detail=report,
        )
    return worst if req.budget_fen is None else min(worst, req.budget_fen)


def _check_places(req: JobRequirements, facts: list[Any]) -> None:
    """Each center or pool the job names (`centers`, `exclude_centers`) exists."""
    known = {st.center_slug for st in facts} | {st.label for st in facts}
    for key, places in (("centers", req.constraints.centers),
                        ("exclude_centers", req.constraints.exclude_centers)):
        unknown = [c for c in places if c not in known]
        if unknown:
            raise InvalidInput(f"{key}: no center or pool {', '.join(unknown)} (see suanli "
                               "centers)", field=key)


def _places_nowhere(req: JobRequirements, facts: list[Any]) -> tuple[str, str]:
    """When the centers the job is restricted to (or kept from) are what keeps it from every
    pool: say so; ("", "resources") otherwise."""
    c = req.constraints
    if not (c.centers or c.exclude_centers):
        return "", "resources"
    free = replace(req, constraints=replace(c, centers=(), exclude_centers=()))
    if not any(not static_reasons(free, st) for st in facts):
        return "", "resources"
    if c.centers:
        return (f"no pool at {', '.join(c.centers)} can run it (other centers could: drop "
                "centers)", "centers")
    return "only the excluded centers could run it", "exclude_centers"


def _nowhere(req: JobRequirements, facts: list[Any]) -> tuple[str, str]:
    """What the job asks for that no pool of the network has at all (arch, feature,
    environment), and the field to name; ("", "resources") when each exists somewhere."""
    specs = [st.spec for st in facts]
    c = req.constraints
    if c.arch and all(sp.arch != c.arch for sp in specs):
        return f"no pool has arch {c.arch}", "constraints.arch"
    absent = [f for f in c.features if all(f not in sp.features for sp in specs)]
    if absent:
        return f"no pool has feature {', '.join(absent)}", "constraints.features"
    if req.environment and all(req.environment not in sp.environments for sp in specs):
        return f"no pool offers environment {req.environment}", "environment"
    return "", "resources"


def _datasets_nowhere(req: JobRequirements, facts: list[Any]) -> tuple[str, str]:
    """When the job's datasets registered at centers (no bytes in suanli: they never move) are
    what keeps it from every pool: which, and where they are; ("", "resources") otherwise."""
    if req.data is None or not req.data.pinned:
        return "", "resources"
    if not any(not static_reasons(replace(req, data=None), st) for st in facts):
        return "", "resources"  # it fits nowhere, whatever its data
    names = ", ".join(name for name, _ in req.data.pinned)
    where = frozenset.intersection(*(at for _, at in req.data.pinned))
    one = len(req.data.pinned) == 1
    head = f"dataset {names} is" if one else f"datasets {names} are"
    if not where:
        return f"{head} at no center{'' if one else ' together'}", "inputs"
    return (f"{head} {'' if one else 'together '}only at {', '.join(sorted(where))}, where no "
            "pool can run it", "inputs")


def queued_backlog(s: Session) -> dict[int, float]:
    """Unit-seconds of walltime queued at each pool (jobs committed there, not started)."""
    rows = s.execute(
        select(m.Job.target_pool_id, func.sum(m.Job.units * m.Job.walltime_s))
        .where(m.Job.state == JobState.QUEUED.value, m.Job.target_pool_id.is_not(None))
        .group_by(m.Job.target_pool_id)
    )
    return {int(pid): float(total or 0) for pid, total in rows if pid is not None}


def check_deadline_and_budget(p: Platform, req: JobRequirements, now: datetime) -> Decision:
    """Refuse (422, with the best estimate) a job no pool can run within its budget, or whose
    best estimated finish — behind the work already queued — is after its deadline."""
    with p.db.session() as s:
        d = explain_job(req, pool_states(s), now, backlog=queued_backlog(s))
    feasible = [c for c in d.candidates if c.feasible]
    if req.budget_fen is not None and not feasible:
        priced = [c for c in d.candidates if c.cost_fen is not None and c.finish_s is not None]
        if priced and all("over the budget" in " ".join(c.reasons) for c in priced):
            cheapest = min(priced, key=lambda c: c.cost_exact)
            raise InvalidInput(
                f"the cheapest pool ({cheapest.pool}) would cost about {yuan(cheapest.cost_fen)} for "
                f"the walltime, over the budget of {yuan(req.budget_fen)}", field="budget_fen",
                detail=[c.as_dict() for c in d.candidates])
    if req.deadline is not None and feasible:
        best = min(feasible, key=lambda c: c.finish_s if c.finish_s is not None else math.inf)
        if best.finish_s is not None and now + timedelta(seconds=best.finish_s) > req.deadline:
            finish = now + timedelta(seconds=best.finish_s)
            raise InvalidInput(
                f"no pool can finish the job by its deadline {req.deadline.isoformat()}: the earliest "
                f"estimated finish is {finish.isoformat(timespec='seconds')} on {best.pool} "
                f"(start in {round(best.wait_s or 0)} s, walltime {req.walltime_s} s)",
                field="deadline", detail=[c.as_dict() for c in d.candidates])
    return d


def _record(s: Session, job: m.Job, target: JobState, reason: str, at: datetime) -> None:
    """The one way a job changes state: checked by the state machine and written to history."""
    current = JobState(job.state)
    check_transition(current, target)
    job.state = target.value
    job.state_reason = reason[:500]
    job.updated_at = at
    if target is JobState.RUNNING and job.started_at is None:
        job.started_at = at
    if target.is_terminal:
        job.finished_at = at
        # What the job still held against its tenant's money is free again (read from the row:
        # billing lowers holds with plain SQL).
        hold = s.scalar(select(m.Job.hold_fen).where(m.Job.id == job.id)) or 0
        if hold:
            s.execute(update(m.Tenant).where(m.Tenant.id == job.tenant_id)
                      .values(held_fen=m.Tenant.held_fen - hold))
            job.hold_fen = 0
    s.add(m.JobEvent(job_id=job.id, at=at, from_state=current.value, to_state=target.value,
                     reason=reason[:500]))


transition = _record


_INSERT_JOB = insert(m.Job).returning(m.Job.id)
_INSERT_EVENT = insert(m.JobEvent)


def submit_job(p: Platform, actor: Principal, data: JobInput,
               key: idempotency.SubmissionKey | None = None) -> m.Job:
    """Queue a job; with `key` (its Idempotency-Key) the key is recorded with it."""
    if not actor.role.is_tenant or actor.tenant_id is None:
        raise Forbidden("jobs are submitted by tenant users (tenant_admin or tenant_user)")
    now = p.clock.now()
    hold = check_submission(p, data, now, actor.tenant_id)
    with p.db.session() as s:
        check_references(s, actor.tenant_id, data)
    return insert_job(p, actor, data, now, hold_fen=hold, key=key)


def check_submission(p: Platform, data: JobInput, now: datetime,
                     tenant_id: int | None = None, *, stage_inputs: bool = False) -> int:
    """Everything a job must pass before it is queued: valid fields, a pool that could ever run
    it (with `tenant_id`, at a center holding each dataset it names that cannot travel), and its
    budget and deadline. Returns the most it may cost (see `check_feasible`).
    `stage_inputs`: a DAG stage's, whose inputs may name other stages (`_validate_task`)."""
    _validate(data, now, stage_inputs=stage_inputs)
    if (data.data_site is None) != (data.data_gb is None):
        raise InvalidInput("give data_site and data_gb together", field="data_site")
    if data.data_gb is not None and not 0 < data.data_gb <= 10_000_000:
        raise InvalidInput("data_gb must be more than 0 and at most 10,000,000", field="data_gb")
    if data.data_site is not None:
        with p.db.session() as s:
            if s.scalar(select(m.Center.id).where(m.Center.slug == data.data_site)) is None:
                raise InvalidInput(f"data_site {data.data_site!r} is not a center", field="data_site")
    _check_pool_needs(data)
    req = data_requirements(p, data, tenant_id)
    hold = check_feasible(p, req)
    if req.deadline is not None or req.budget_fen is not None:
        check_deadline_and_budget(p, req, now)
    return hold


def data_requirements(p: Platform, data: JobInput, tenant_id: int | None) -> JobRequirements:
    """The job's requirements with the real bytes its inputs take to each center (and where its
    datasets that cannot travel are), for the tenant `tenant_id`; without one, as typed."""
    req = data.requirements()
    if any(st.peer for st in cached_pool_facts(p)):  # (the rule weighs only peers' pools)
        with p.db.session() as s:
            gain = peer_rule(s, tenant_id, p.settings.peers_earlier_by_s)
        if gain is not None:
            req = replace(req, peer_earlier_by_s=gain)
    if tenant_id is None or not (data.workdir_sha256 or data.inputs):
        return req
    with p.db.session() as s:
        moved = bytes_to_move(s, {0: (tenant_id, data.workdir_sha256, data.inputs)})
    return replace(req, data=moved.get(0))


def insert_job(p: Platform, actor: Principal, data: JobInput, now: datetime, *, hold_fen: int,
               dag: tuple[int, str] | None = None, reason: str = "",
               key: idempotency.SubmissionKey | None = None) -> m.Job:
    """Queue a checked job (`dag`: the DAG and stage it belongs to), if the tenant's money covers
    `hold_fen`, its cost estimate (else PaymentRequired). Submissions run in the server's thread
    pool; the money check and the insert are one serialised step (on SQLite the threads take the
    write lock in turn, not in SQLite's sleeping busy handler)."""
    with p.db.session(immediate=True) as s:
        job = queue_job(s, actor, data, now, hold_fen=hold_fen, dag=dag, reason=reason)
        if actor.tenant_id is not None:  # (queue_job refused anyone else)
            idempotency.record(s, actor.tenant_id, key, now, job_id=job.id)
        return job


def queue_job(s: Session, actor: Principal, data: JobInput, now: datetime, *, hold_fen: int,
              dag: tuple[int, str] | None = None, reason: str = "",
              array: tuple[int, int] | None = None) -> m.Job:
    """`insert_job` in the caller's transaction (`array`: the array and index of a task)."""
    assert actor.tenant_id is not None
    values: dict[str, Any] = dict(
        tenant_id=actor.tenant_id,
        user_id=actor.user_id,
        name=data.name.strip(),
        command=list(data.command),
        device_kind=data.device.value,
        device_model=data.model,
        units=data.units,
        nodes=data.nodes,
        memory_gb=data.memory_gb,
        walltime_s=data.walltime_s,
        precision=data.precision.value,
        policy=data.policy.value,
        priority=data.priority,
        domestic_only=data.domestic_only,
        district=data.district,
        deadline=data.deadline,
        budget_fen=data.budget_fen,
        requeue=data.requeue,
        state=JobState.QUEUED.value,
        state_reason="submitted",
        submitted_at=now,
        updated_at=now,
        data_site=data.data_site,
        data_gb=data.data_gb,
        dag_id=dag[0] if dag else None,
        dag_stage=dag[1] if dag else None,
        hold_fen=hold_fen,
        env=dict(data.env),
        setup=data.setup,
        workdir_sha256=data.workdir_sha256,
        inputs=list(data.inputs),
        outputs=list(data.outputs),
        constraints=dict(data.constraints),
        environment=data.environment,
        array_id=array[0] if array else None,
        array_index=array[1] if array else None,
    )
    # Core inserts, not the ORM unit of work: submission is the hottest write path.
    admit(s, actor.tenant_id, hold_fen)
    conn = s.connection()  # Core on the session's connection: no ORM bulk-insert machinery
    job_id = conn.execute(_INSERT_JOB, values).scalar_one()
    conn.execute(_INSERT_EVENT, {"job_id": job_id, "at": now, "from_state": None,
                                 "to_state": "QUEUED",
                                 "reason": reason or f"submitted by {actor.username}"})
    return m.Job(id=job_id, exit_code=None, started_at=None, finished_at=None,
                 cancel_requested_at=None, current_run_id=None, target_pool_id=None,
                 **values)


def require_job_reader(actor: Principal) -> None:
    """A reviewer reads no jobs nor DAGs (403 for every id: no existence leaks): it judges a
    voucher application by the tenant, its usage, money and invoices, not by what it computes."""
    if actor.role is Role.REVIEWER:
        raise Forbidden("a reviewer does not read jobs: a tenant's usage (/api/v1/usage), money "
                        "(/api/v1/ledger/tenants/{id}) and invoices are what it judges by")


def _visible(q: Any, actor: Principal) -> Any:
    """Who reads which jobs: a tenant's users its own; a center operator those that ran on its
    center; the platform admin and the auditor every job (the auditor checks what vouchers paid
    for); a reviewer none."""
    require_job_reader(actor)
    if actor.role.is_tenant:
        return q.where(m.Job.tenant_id == actor.tenant_id)
    if actor.role is Role.CENTER_OPERATOR:
        on_center = select(m.Run.job_id).where(m.Run.center_id == actor.center_id)
        return q.where(m.Job.id.in_(on_center))
    return q


def may_read_output(actor: Principal) -> bool:
    """Whether the actor may read the output (logs) of the jobs it sees: the tenant's users, the
    platform admin, and the operator of the center that ran the job (its machines hold the output
    anyway). Not the auditor nor the reviewer: they check money, not what tenants compute."""
    return actor.role.is_tenant or actor.role in (Role.PLATFORM_ADMIN, Role.CENTER_OPERATOR)


def _get(s: Session, actor: Principal, job_id: int, *, lock: bool = False) -> m.Job:
    q = _visible(select(m.Job).where(m.Job.id == job_id), actor)
    if lock:  # see store.locks: the job row first, until the transaction ends
        q = q.with_for_update(key_share=True).execution_options(populate_existing=True)
    job: m.Job | None = s.scalar(q)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def get_job(p: Platform, actor: Principal, job_id: int) -> m.Job:
    with p.db.session() as s:
        return _get(s, actor, job_id)


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be 1-1000", field="limit")
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")


@dataclass
class JobPage:
    items: list[m.Job]
    total: int
    limit: int
    offset: int


def _name_matches(pattern: str) -> Any:
    """A job-name filter, case-insensitive: a glob when it has * or ? ('train-*'), else a
    substring. LIKE's own wildcards in it are literal."""
    if "*" not in pattern and "?" not in pattern:
        return m.Job.name.icontains(pattern, autoescape=True)
    like = "".join("%" if ch == "*" else "_" if ch == "?" else "\\" + ch if ch in "%_\\" else ch
                   for ch in pattern)
    return m.Job.name.ilike(like, escape="\\")


def list_jobs(
    p: Platform,
    actor: Principal,
    *,
    state: JobState | None = None,
    tenant_id: int | None = None,
    name: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    check_page(limit, offset)
    if tenant_id is not None:
        hide_other_tenant(actor, tenant_id)
    with p.db.session() as s:
        q = _visible(select(m.Job), actor)
        if state is not None:
            q = q.where(m.Job.state == state.value)
        if tenant_id is not None:
            q = q.where(m.Job.tenant_id == tenant_id)
        if name:
            q = q.where(_name_matches(name))
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        items = list(s.scalars(q.order_by(m.Job.id.desc()).limit(limit).offset(offset)))
        return JobPage(items, total, limit, offset)


def job_history(p: Platform, actor: Principal, job_id: int) -> list[m.JobEvent]:
    with p.db.session() as s:
        _get(s, actor, job_id)
        return list(s.scalars(select(m.JobEvent).where(m.JobEvent.job_id == job_id)
                              .order_by(m.JobEvent.id)))


def job_runs(p: Platform, actor: Principal, job_id: int) -> list[m.Run]:
    with p.db.session() as s:
        _get(s, actor, job_id)
        return list(s.scalars(select(m.Run).where(m.Run.job_id == job_id).order_by(m.Run.id)))


def cancel_job(p: Platform, actor: Principal, job_id: int, reason: str = "") -> m.Job:
    now = p.clock.now()
    run_to_cancel: tuple[m.Center, str] | None = None
    # Read and written in one serialised step: the engine may be placing the job right now.
    with p.db.session(immediate=True) as s:
        job = _get(s, actor, job_id, lock=True)
        if not (actor.role.is_tenant or actor.role is Role.PLATFORM_ADMIN):
            raise Forbidden("only the tenant's users or a platform admin cancel a job")
        state = JobState(job.state)
        if state.is_terminal:
            raise Conflict(f"job {job_id} has already ended ({state})")
        why = reason or f"cancelled by {actor.username}"
        if state is JobState.QUEUED:
            _record(s, job, JobState.CANCELLED, why, now)
        else:
            job.cancel_requested_at = job.cancel_requested_at or now
            job.state_reason = f"cancel requested by {actor.username}"
            run = s.get(m.Run, job.current_run_id) if job.current_run_id else None
            if run is not None and run.external_id:
                center = s.get(m.Center, run.center_id)
                assert center is not None
                run_to_cancel = (center, run.external_id)
    if run_to_cancel is not None:
        center, ext = run_to_cancel
        try:
            p.connector_for(center).cancel(ext)
        except ConnectorError:
            pass  # the engine retries on its next pass
    return get_job(p, actor, job_id)


@dataclass
class LogChunk:
    data: str
    offset: int
    next_offset: int
    eof: bool
    run_id: int | None


def _complete_utf8(chunk: bytes) -> bytes:
    """Cut a trailing partial UTF-8 sequence so that a chunk always decodes cleanly."""
    for back in range(1, min(4, len(chunk)) + 1):
        b = chunk[-back]
        if b & 0xC0 == 0x80:
            continue
        if b & 0x80 == 0:
            return chunk
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4
        return chunk if back >= need else chunk[:-back]
    return chunk


def job_logs(
    p: Platform, actor: Principal, job_id: int, *, stream: str = "stdout", offset: int = 0,
    run_id: int | None = None,
) -> LogChunk:
    if stream not in ("stdout", "stderr"):
        raise InvalidInput("stream must be stdout or stderr", field="stream")
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    with p.db.session() as s:
        job = _get(s, actor, job_id)
        if not may_read_output(actor):
            raise Forbidden("a job's logs are for its tenant, the platform admin and the center "
                            f"that ran it, not for the {actor.role.value} role")
        rid = run_id or job.current_run_id
        run = s.get(m.Run, rid) if rid else None
        if run is None or run.job_id != job.id:
            if run_id is not None:
                raise NotFound(f"job {job_id} has no run {run_id}")
            return LogChunk("", offset, offset, JobState(job.state).is_terminal, None)
        center = s.get(m.Center, run.center_id)
        assert center is not None
        done = JobState(job.state).is_terminal or run.state not in ("pending", "running")
        ext = run.external_id
    if ext is None:
        return LogChunk("", offset, offset, done, run.id)
    try:
        raw = _complete_utf8(p.connector_for(center).logs(ext, stream, offset))
    except ConnectorError as exc:
        raise ConnectorError(f"cannot read logs from center {center.slug}: {exc.message}") from exc
    return LogChunk(raw.decode("utf-8", "replace"), offset, offset + len(raw), done and not raw,
                    run.id)


def _own_center_only(explanation: dict[str, Any], center_id: int | None) -> dict[str, Any]:
    """An explanation with only the candidate pools of one center: the rest are other centers'
    prices and loads, which their competitor does not read."""
    candidates = explanation.get("candidates")
    if not isinstance(candidates, list):
        return explanation
    return {**explanation,
            "candidates": [c for c in candidates if isinstance(c, dict) and c.get("center_id") == center_id]}


def placement_explanation(p: Platform, actor: Principal, job_id: int) -> dict[str, Any]:
    """Every placement of the job with its reasons; for a queued job, the evaluation right now.
    A center operator sees only its own center's candidates."""
    out = _placement_explanation(p, actor, job_id)
    if actor.role is Role.CENTER_OPERATOR:
        out["placements"] = [_own_center_only(pl, actor.center_id) for pl in out["placements"]]
        if out["current"] is not None:
            out["current"] = _own_center_only(out["current"], actor.center_id)
    return out


def _placement_explanation(p: Platform, actor: Principal, job_id: int) -> dict[str, Any]:
    with p.db.session() as s:
        job = _get(s, actor, job_id)
        placements = list(s.scalars(select(m.Placement).where(m.Placement.job_id == job_id)
                                    .order_by(m.Placement.id)))
        out: dict[str, Any] = {
            "job_id": job.id,
            "state": job.state,
            "placements": [
                {"id": pl.id, "pool_id": pl.pool_id, "center_id": pl.center_id,
                 "decided_at": pl.decided_at.isoformat(), "policy": pl.policy,
                 **pl.explanation}
                for pl in placements
            ],
            "current": None,
        }
        if job.state == JobState.QUEUED.value:
            decision = explain_job(requirements_of(job, s,
                                                   peer_default=p.settings.peers_earlier_by_s),
                                   pool_states(s), p.clock.now(),
                                   job_id=job.id)
            out["current"] = decision.explanation()
        elif placements:
            out["current"] = out["placements"][-1]
        return out


def estimate(p: Platform, actor: Principal, data: JobInput) -> dict[str, Any]:
    """What submitting this job would do now (no job is created): for those who submit jobs and
    the platform admin (it prices every pool: not for a center operator, who sees only its own)."""
    if not (actor.role.is_tenant or actor.role is Role.PLATFORM_ADMIN):
        raise Forbidden("estimates are for tenants' users (and the platform admin)")
    now = p.clock.now()
    _validate(data, now)
    _check_pool_needs(data)
    if actor.tenant_id is not None:  # (its artifacts may not be uploaded yet: a dry run)
        with p.db.session() as s:
            check_datasets(s, actor.tenant_id, data)
    req = data_requirements(p, data, actor.tenant_id)
    check_feasible(p, req)
    with p.db.session() as s:
        states = pool_states(s)
    # A peer platform's pools: its own answer, asked now (negotiation; services/peer_quotes).
    quotes = peer_quotes.ask_all(p, req, states) if any(st.peer for st in states) else None
    return explain_job(req, states, now, quotes=quotes).explanation()


def _input_of(job: m.Job) -> JobInput:
    """The task a stored job was submitted with, to submit again."""
    deadline = job.deadline
    if deadline is not None and deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    return JobInput(
        name=job.name, command=list(job.command), device=DeviceKind(job.device_kind),
        units=job.units, nodes=job.nodes, model=job.device_model, memory_gb=job.memory_gb,
        walltime_s=job.walltime_s, precision=Precision(job.precision), policy=Policy(job.policy),
        priority=job.priority, domestic_only=job.domestic_only, district=job.district,
        deadline=deadline, budget_fen=job.budget_fen, requeue=job.requeue, env=dict(job.env or {}),
        data_site=job.data_site, data_gb=job.data_gb, setup=job.setup,
        workdir_sha256=job.workdir_sha256, inputs=list(job.inputs or []),
        outputs=list(job.outputs or []), constraints=dict(job.constraints or {}),
        environment=job.environment)


def resubmit_job(p: Platform, actor: Principal, job_id: int) -> m.Job:
    """The same task as job `job_id`, as a new job, through every check a submission passes (a
    deadline now past, a budget or money no longer enough, an artifact since deleted: refused as
    a new job would be). Only the job's own tenant submits it again; another tenant's job is not
    found. A task of an array keeps its array and index; a DAG stage (a task of an array stage
    too) comes back as a job of its own."""
    if not actor.role.is_tenant or actor.tenant_id is None:
        raise Forbidden("jobs are submitted by tenant users (tenant_admin or tenant_user)")
    with p.db.session() as s:
        old = _get(s, actor, job_id)
        data = _input_of(old)
        array = (old.array_id, old.array_index) if old.array_id is not None \
            and old.array_index is not None and old.dag_id is None else None
    now = p.clock.now()
    hold = check_submission(p, data, now, actor.tenant_id)
    with p.db.session(immediate=True) as s:
        check_references(s, actor.tenant_id, data)
        return queue_job(s, actor, data, now, hold_fen=hold, array=array,
                         reason=f"resubmitted from job {job_id} by {actor.username}")
