"""Routes: jobs (submit, list, show, cancel, logs, placement) and metered usage."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from ..domain.jobstate import JobState
from ..domain.task import parse_array
from ..services import arrays, dags, idempotency, jobs, ledger, usage
from ..services.context import Platform
from ..services.dags import StageInput
from ..services.estimates import QueueEstimate, queue_estimates
from ..services.jobs import JobInput
from ..store import models as m
from .deps import EngineDep, PlatformDep, PrincipalDep
from .render import job_public
from .routes_platform import ERRORS
from .schemas import (
    BIG,
    MAX_ID,
    ArrayPublic,
    ArraySubmitted,
    DagPage,
    DagPublic,
    DagSubmit,
    DepositIn,
    JobDetail,
    JobEventPublic,
    JobPage,
    JobPublic,
    JobSubmit,
    LogChunkPublic,
    PathId,
    RunPublic,
    TenantAccount,
    UsagePage,
    UsagePublic,
    UsageTotals,
)
from .schemas_money import TrialBalance
from .schemas_platform import Explanation, PlacementHistory

router = APIRouter(prefix="/api/v1", responses=ERRORS)
Id = Annotated[int, Query(ge=1, le=MAX_ID)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=idempotency.MAX_KEY,
    description="makes a retry safe: the same request with the same key answers the job the "
                "first one queued (a UUID per submission, say)")]
NameFilter = Annotated[str | None, Query(
    max_length=200, pattern="^[^\x00]*$",
    description="jobs whose name contains this (case-insensitive), or matches it as a glob "
                "when it has * or ? ('train-*')")]


def _input(body: JobSubmit) -> JobInput:
    r = body.resources
    return JobInput(
        name=body.name, command=body.command, device=r.device, units=r.units, nodes=r.nodes,
        model=r.model, memory_gb=r.memory_gb, walltime_s=body.walltime_s,
        precision=body.precision, policy=body.policy, priority=body.priority,
        domestic_only=body.domestic_only, district=body.district, deadline=body.deadline,
        budget_fen=body.budget_fen, requeue=body.requeue, data_site=body.data_site,
        data_gb=body.data_gb, env=dict(body.env or {}), setup=body.setup,
        workdir_sha256=body.workdir, inputs=list(body.inputs), outputs=list(body.outputs),
        constraints=dict(body.constraints or {}), environment=body.environment,
        centers=body.centers, exclude_centers=body.exclude_centers,
    )


def _center_slugs(p: Platform, run_ids: list[int]) -> dict[int, str]:
    if not run_ids:
        return {}
    with p.db.session() as s:
        rows = s.execute(select(m.Run.id, m.Center.slug).join(m.Center)
                         .where(m.Run.id.in_(run_ids)))
        return {rid: slug for rid, slug in rows}


def _queues(p: Platform, items: list[m.Job]) -> dict[int, QueueEstimate]:
    if not any(j.state == JobState.QUEUED.value and j.target_pool_id for j in items):
        return {}
    with p.db.session() as s:
        return queue_estimates(p, s, items)


@router.post("/jobs", status_code=201, tags=["jobs"])
def submit_job(body: JobSubmit, p: PlatformDep, who: PrincipalDep, engine: EngineDep,
               response: Response, idempotency_key: IdempotencyKey = None
               ) -> JobPublic | ArraySubmitted:
    """Submit a job. Refused with 422 and per-pool reasons when no pool could ever run it.
    With `array`, one job per index, all held and queued together: the answer is the array.
    With an `Idempotency-Key`, a retry of the same request answers the job (or array) the first
    one queued, with `Idempotent-Replayed: true`, and queues nothing; the key with another
    request is refused (409)."""
    # A plain `def`: FastAPI runs it in its thread pool. Submission waits on the database (the
    # write lock, which the engine holds for its passes); on the event loop it held up every
    # other request, /api/v1/health included.
    key = (idempotency.SubmissionKey.of(idempotency_key, body.model_dump_json().encode())
           if idempotency_key is not None else None)

    def submit() -> JobPublic | ArraySubmitted:
        if body.array is not None:
            array, ids = arrays.submit_array(p, who, _input(body), parse_array(body.array), key)
            return ArraySubmitted(array_id=array.id, jobs=ids)
        return job_public(jobs.submit_job(p, who, _input(body), key))

    def replay(earlier: idempotency.Earlier) -> JobPublic | ArraySubmitted:
        if earlier.array_id is not None:
            view = arrays.array_view(p, who, earlier.array_id)
            return ArraySubmitted(array_id=earlier.array_id, jobs=view["jobs"])
        assert earlier.job_id is not None
        return job_public(jobs.get_job(p, who, earlier.job_id))

    answer, replayed = idempotency.submit_once(p, who, key, submit, replay)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        engine.wake()
    return answer


@router.post("/jobs/{job_id}/resubmit", status_code=201, tags=["jobs"])
def resubmit_job(job_id: PathId, p: PlatformDep, who: PrincipalDep,
                 engine: EngineDep) -> JobPublic:
    """The same task as job `job_id`, as a new job."""
    job = jobs.resubmit_job(p, who, job_id)
    engine.wake()
    return job_public(job)


@router.get("/arrays/{array_id}", tags=["jobs"])
def get_job_array(array_id: PathId, p: PlatformDep, who: PrincipalDep) -> ArrayPublic:
    """An array job: its tasks' job ids (by index) and how many are in each state."""
    return ArrayPublic.model_validate(arrays.array_view(p, who, array_id))


@router.post("/jobs/estimate", tags=["jobs"])
def estimate_job(body: JobSubmit, p: PlatformDep, who: PrincipalDep) -> Explanation:
    """Where the job would go now, with every candidate's score; nothing is submitted."""
    return Explanation.model_validate(jobs.estimate(p, who, _input(body)))


@router.get("/jobs", tags=["jobs"])
def list_jobs(
    p: PlatformDep, who: PrincipalDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    tenant_id: Id | None = None, name: NameFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=BIG)] = 0,
) -> JobPage:
    page = jobs.list_jobs(p, who, state=state, tenant_id=tenant_id, name=name, limit=limit,
                          offset=offset)
    slugs = _center_slugs(p, [j.current_run_id for j in page.items if j.current_run_id])
    queues = _queues(p, page.items)
    return JobPage(
        items=[job_public(j, slugs.get(j.current_run_id or 0), queues.get(j.id)) for j in page.items],
        total=page.total, limit=page.limit, offset=page.offset,
    )


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: PathId, p: PlatformDep, who: PrincipalDep) -> JobDetail:
    job = jobs.get_job(p, who, job_id)
    runs = jobs.job_runs(p, who, job_id)
    slugs = _center_slugs(p, [r.id for r in runs])
    base = job_public(job, slugs.get(job.current_run_id or 0), _queues(p, [job]).get(job.id))
    return JobDetail(
        **base.model_dump(),
        history=[JobEventPublic.model_validate(e) for e in jobs.job_history(p, who, job_id)],
        runs=[RunPublic.model_validate(r) for r in runs],
    )


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel_job(job_id: PathId, p: PlatformDep, who: PrincipalDep, engine: EngineDep) -> JobPublic:
    job = jobs.cancel_job(p, who, job_id)
    engine.wake()
    return job_public(job)


@router.get("/jobs/{job_id}/logs", tags=["jobs"])
def job_logs(
    job_id: PathId, p: PlatformDep, who: PrincipalDep,
    stream: Literal["stdout", "stderr"] = "stdout",
    offset: Annotated[int, Query(ge=0, le=BIG)] = 0, run_id: Id | None = None,
) -> LogChunkPublic:
    """A chunk of a run's log from a byte offset; follow with `next_offset` until `eof`."""
    chunk = jobs.job_logs(p, who, job_id, stream=stream, offset=offset, run_id=run_id)
    return LogChunkPublic(data=chunk.data, offset=chunk.offset, next_offset=chunk.next_offset,
                          eof=chunk.eof, run_id=chunk.run_id)


@router.get("/jobs/{job_id}/placement", tags=["jobs"])
def job_placement(job_id: PathId, p: PlatformDep, who: PrincipalDep) -> PlacementHistory:
    """Why the job is where it is: every candidate pool, feasible or not, with its reasons and
    score components, and the chosen one."""
    return PlacementHistory.model_validate(jobs.placement_explanation(p, who, job_id))


@router.post("/dags", status_code=201, tags=["dags"])
def submit_dag(body: DagSubmit, p: PlatformDep, who: PrincipalDep, engine: EngineDep) -> DagPublic:
    """Submit a DAG job: stages with dependencies, each placed on its own best pool when the
    stages it depends on have completed (a stage with `array`: a job array). An input
    `{"stage": NAME, "path": DIR}` is the outputs of NAME, a stage it depends on. Refused with
    422 naming the stage (or the cycle)."""
    stages = [StageInput(st.name, _input(st), list(st.depends_on), st.array)
              for st in body.stages]
    dag = dags.submit_dag(p, who, body.name, stages)
    engine.wake()
    return DagPublic.model_validate(dags.dag_view(p, who, dag.id))


@router.get("/dags", tags=["dags"])
def list_dags(p: PlatformDep, who: PrincipalDep,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50,
              offset: Annotated[int, Query(ge=0, le=BIG)] = 0) -> DagPage:
    rows, total = dags.list_dags(p, who, limit=limit, offset=offset)
    return DagPage(items=[DagPublic.model_validate(dags.dag_view(p, who, d.id)) for d in rows],
                   total=total, limit=limit, offset=offset)


@router.get("/dags/{dag_id}", tags=["dags"])
def get_dag(dag_id: PathId, p: PlatformDep, who: PrincipalDep) -> DagPublic:
    return DagPublic.model_validate(dags.dag_view(p, who, dag_id))


@router.post("/dags/{dag_id}/cancel", tags=["dags"])
def cancel_dag(dag_id: PathId, p: PlatformDep, who: PrincipalDep, engine: EngineDep) -> DagPublic:
    """Cancel a DAG: its stages that have not ended are cancelled; no further stage is queued."""
    dags.cancel_dag(p, who, dag_id)
    engine.wake()
    return DagPublic.model_validate(dags.dag_view(p, who, dag_id))


@router.get("/ledger/trial-balance", tags=["ledger"])
def trial_balance(p: PlatformDep, who: PrincipalDep) -> TrialBalance:
    """Every ledger account with its balance in fen (debit > 0); the balances sum to exactly 0.
    Platform admin and auditor."""
    return TrialBalance.model_validate(ledger.trial_balance(p, who))


@router.post("/ledger/deposits", status_code=201, tags=["ledger"])
def record_deposit(body: DepositIn, p: PlatformDep, who: PrincipalDep) -> TenantAccount:
    """Record money a tenant paid in (platform admin); the reference makes it idempotent."""
    return TenantAccount.model_validate(
        ledger.record_deposit(p, who, body.tenant_id, body.amount_fen, body.reference))


@router.get("/ledger/tenants/{tenant_id}", tags=["ledger"])
def tenant_account(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> TenantAccount:
    """A tenant's money: prepaid, owed, deposited and billed, in fen."""
    return TenantAccount.model_validate(ledger.tenant_account(p, who, tenant_id))


@router.get("/usage", tags=["usage"])
def list_usage(
    p: PlatformDep, who: PrincipalDep, job_id: Id | None = None, tenant_id: Id | None = None,
    center_id: Id | None = None, since: datetime | None = None, until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIG)] = 0,
) -> UsagePage:
    """Metered runs (unit-seconds, standard P·h, energy, amount in fen) and their totals."""
    page = usage.list_usage(p, who, job_id=job_id, tenant_id=tenant_id, center_id=center_id,
                            since=since, until=until, limit=limit, offset=offset)
    return UsagePage(items=[UsagePublic.model_validate(u) for u in page.items], total=page.total,
                     totals=UsageTotals.model_validate(page.totals), limit=page.limit,
                     offset=page.offset)
