"""Rows -> API models (adds derived figures such as capacity in P)."""

from __future__ import annotations

from ..domain.enums import CenterKind, CenterStatus, Policy, Precision
from ..domain.jobstate import JobState
from ..services.centers import center_identifier, pool_identifier, redact
from ..services.estimates import QueueEstimate
from ..store import models as m
from .schemas import CenterPublic, JobPublic, PoolPublic, QueueInfo


def pool_public(pool: m.Pool, used: dict[int, int] | None = None, *, network: str,
                slug: str) -> PoolPublic:
    """`network`: this platform's network identifier; `slug`: the pool's center's."""
    spec = pool.spec()
    out = PoolPublic.model_validate(pool)
    out.identifier = pool_identifier(network, slug, pool)
    out.total_units = spec.total_units
    out.peak_pflops = {p.value: round(spec.peak_pflops(p), 6) for p in Precision}
    if used is not None:
        out.used_units = used.get(pool.id, 0)
    return out


def center_public(center: m.Center, used: dict[int, int] | None = None, *,
                  network: str) -> CenterPublic:
    pools = [pool_public(p, used, network=network, slug=center.slug) for p in center.pools]
    out = CenterPublic(
        id=center.id, slug=center.slug, identifier=center_identifier(network, center),
        name_zh=center.name_zh, name_en=center.name_en,
        kind=CenterKind(center.kind), district=center.district, operator=center.operator, pue=center.pue,
        connector=center.connector, connector_config=redact(center.connector_config or {}),
        status=CenterStatus(center.status), status_reason=center.status_reason,
        status_source="health" if center.status_source == "health" else "operator",
        health_failures=center.health_failures,
        health_detail=center.health_detail, health_checked_at=center.health_checked_at,
        offline_since=center.offline_since, emulated=center.emulated,
        created_at=center.created_at, pools=pools,
    )
    out.peak_pflops = {
        p.value: round(sum(pl.peak_pflops.get(p.value, 0.0) for pl in pools), 6)
        for p in Precision
    }
    return out


def job_public(job: m.Job, center: str | None = None, queue: QueueEstimate | None = None) -> JobPublic:
    return JobPublic(
        id=job.id, tenant_id=job.tenant_id, user_id=job.user_id, name=job.name,
        command=list(job.command),
        resources={"device": job.device_kind, "model": job.device_model, "units": job.units,
                   "nodes": job.nodes, "memory_gb": job.memory_gb},
        walltime_s=job.walltime_s, precision=Precision(job.precision), policy=Policy(job.policy),
        priority=job.priority, domestic_only=job.domestic_only, district=job.district,
        deadline=job.deadline, budget_fen=job.budget_fen, requeue=job.requeue, state=JobState(job.state),
        state_reason=job.state_reason, exit_code=job.exit_code, submitted_at=job.submitted_at,
        updated_at=job.updated_at, started_at=job.started_at, finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at, current_run_id=job.current_run_id,
        center=center, dag_id=job.dag_id, dag_stage=job.dag_stage, data_site=job.data_site,
        data_gb=job.data_gb, env_names=sorted(job.env or {}), setup=job.setup,
        workdir=job.workdir_sha256, inputs=list(job.inputs or []), outputs=list(job.outputs or []),
        constraints=dict(job.constraints or {}), environment=job.environment,
        centers=list((job.constraints or {}).get("centers") or []),
        exclude_centers=list((job.constraints or {}).get("exclude_centers") or []),
        array_id=job.array_id, array_index=job.array_index,
        queue=QueueInfo(pool=queue.pool, position=queue.position, estimated_start=queue.estimated_start)
        if queue is not None else None,
    )
