"""Build the scheduler's snapshot from the database (pools, their free devices, running work)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.enums import CenterStatus, DeviceKind, Policy, Precision
from ..domain.model import DataToMove, JobRequirements, Resources
from ..domain.task import Constraints
from ..scheduling import PoolState, QueuedJob, RunningAllocation
from ..store import models as m
from .centers import ACTIVE_RUN_STATES


@lru_cache(maxsize=256)
def _idle_nodes(units_per_node: int, nodes: int) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(range(n * units_per_node, (n + 1) * units_per_node))
                 for n in range(nodes))


def pool_facts(s: Session) -> list[PoolState]:
    """Pools without their load (no free-device sets): enough for static feasibility, and cheap."""
    return [
        PoolState(pool_id=pool.id, center_id=center.id, center_slug=center.slug,
                  pool_name=pool.name, spec=pool.spec(), pue=center.pue,
                  district=center.district, center_status=CenterStatus(center.status),
                  free_devices=(), free_memory_gb=(), withdrawn=pool.withdrawn_at is not None,
                  peer=center.connector == "suanli")
        for pool, center in s.execute(select(m.Pool, m.Center).join(m.Center).order_by(m.Pool.id))
    ]


def _free_devices(upn: int, nodes: int, used: set[int]) -> tuple[frozenset[int], ...]:
    idle = _idle_nodes(upn, nodes)
    if not used:
        return idle
    busy_nodes = {d // upn for d in used}
    return tuple(idle[n] - used if n in busy_nodes else idle[n] for n in range(nodes))


def pool_states(s: Session) -> list[PoolState]:
    used_devices: dict[int, set[int]] = defaultdict(set)
    used_memory: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    running: dict[int, list[RunningAllocation]] = defaultdict(list)
    runs = s.execute(
        select(
            m.Run.pool_id, m.Run.devices, m.Run.nodes, m.Run.memory_gb, m.Run.units,
            m.Run.walltime_s, m.Run.started_at, m.Run.created_at,
        ).where(m.Run.state.in_(ACTIVE_RUN_STATES))
    )
    for pool_id, devices, nodes, memory_gb, units, walltime_s, started_at, created_at in runs:
        used_devices[pool_id].update(int(d) for d in devices or [])
        for n in nodes or []:
            used_memory[pool_id][int(n)] += memory_gb or 0
        start = started_at or created_at
        running[pool_id].append(RunningAllocation(units, start + timedelta(seconds=walltime_s),
                                                   tuple(int(d) for d in devices or [])))
    states: list[PoolState] = []
    for pool, center in s.execute(select(m.Pool, m.Center).join(m.Center).order_by(m.Pool.id)):
        spec = pool.spec()
        upn = spec.units_per_node
        used = used_devices.get(pool.id, set())
        mem = used_memory.get(pool.id, {})
        states.append(
            PoolState(
                pool_id=pool.id,
                center_id=center.id,
                center_slug=center.slug,
                pool_name=pool.name,
                spec=spec,
                pue=center.pue,
                district=center.district,
                center_status=CenterStatus(center.status),
                free_devices=_free_devices(upn, spec.nodes, used),
                free_memory_gb=tuple(
                    spec.memory_gb_per_node - mem.get(n, 0) for n in range(spec.nodes)
                ),
                running=tuple(running.get(pool.id, ())),
                withdrawn=pool.withdrawn_at is not None,
                peer=center.connector == "suanli",
            )
        )
    return states


# The job columns the scheduler needs, in the order `_requirements` takes them.
_REQ_COLUMNS = (
    m.Job.device_kind, m.Job.units, m.Job.nodes, m.Job.device_model, m.Job.memory_gb,
    m.Job.walltime_s, m.Job.precision, m.Job.policy, m.Job.priority, m.Job.domestic_only,
    m.Job.district, m.Job.deadline, m.Job.budget_fen, m.Job.data_site, m.Job.data_gb,
    m.Job.constraints, m.Job.environment,
)


def _requirements(row: tuple[Any, ...], data: DataToMove | None = None) -> JobRequirements:
    (dev, units, nodes, model, mem, wall, prec, pol, prio, dom, dist, dl, budget, site, gb,
     constraints, environment) = row
    return JobRequirements(
        resources=Resources(DeviceKind(dev), units, nodes, model, mem), walltime_s=wall,
        precision=Precision(prec), policy=Policy(pol), priority=prio, domestic_only=dom,
        district=dist, deadline=dl, budget_fen=budget, data_site=site, data_gb=gb,
        constraints=Constraints.from_dict(constraints), environment=environment, data=data,
    )


def bytes_to_move(s: Session, jobs: dict[int, tuple[int, str | None, list[Any] | None]]
                  ) -> dict[int, DataToMove]:
    """What each job's inputs weigh, from the artifacts and datasets tables: `jobs` maps a job id
    to (tenant id, work folder sha256, inputs). Its work folder and input artifacts are held by
    suanli and go to any center; a dataset counts only at centers without a copy (an uploaded
    dataset with no location goes everywhere), and one suanli has no bytes of is `pinned`: the
    job runs only where it is. Jobs with neither are left out (their typed `data_gb`, if any,
    still counts). Unknown references weigh nothing (submission refuses them)."""
    shas: dict[int, set[str]] = {}
    names: dict[int, set[str]] = {}
    wants: dict[int, tuple[int, set[str], set[str]]] = {}
    for job_id, (tenant, workdir, inputs) in jobs.items():
        arts = {workdir} if workdir else set()
        sets: set[str] = set()
        for item in inputs or []:
            if isinstance(item, dict) and item.get("artifact"):
                arts.add(str(item["artifact"]))
            elif isinstance(item, dict) and item.get("dataset"):
                sets.add(str(item["dataset"]))
        if arts or sets:
            wants[job_id] = (tenant, arts, sets)
            shas.setdefault(tenant, set()).update(arts)
            names.setdefault(tenant, set()).update(sets)
    if not wants:
        return {}
    size: dict[tuple[int, str], int] = {}
    for tenant, wanted in shas.items():
        if wanted:
            rows = s.execute(select(m.Artifact.sha256, m.Artifact.size_bytes).where(
                m.Artifact.tenant_id == tenant, m.Artifact.sha256.in_(wanted)))
            size.update(((tenant, sha), int(n)) for sha, n in rows)
    found: dict[tuple[int, str], tuple[int, set[str], bool]] = {}
    for tenant, wanted in names.items():
        if not wanted:
            continue
        located = s.execute(
            select(m.Dataset.name, m.Dataset.size_bytes, m.Dataset.artifact_sha256, m.Center.slug)
            .outerjoin(m.DatasetLocation, m.DatasetLocation.dataset_id == m.Dataset.id)
            .outerjoin(m.Center, m.Center.id == m.DatasetLocation.center_id)
            .where(m.Dataset.tenant_id == tenant, m.Dataset.name.in_(wanted)))
        for name, n, art, slug in located:
            entry = found.setdefault((tenant, name), (int(n), set(), art is None))
            if slug:
                entry[1].add(slug)
    return {
        job_id: DataToMove(
            sum(size.get((tenant, sha), 0) for sha in sorted(arts)),
            tuple(sorted((found[(tenant, n)][0], frozenset(found[(tenant, n)][1]))
                         for n in sorted(sets) if (tenant, n) in found)),
            tuple((n, frozenset(found[(tenant, n)][1])) for n in sorted(sets)
                  if (tenant, n) in found and found[(tenant, n)][2]))
        for job_id, (tenant, arts, sets) in wants.items()
    }


def requirements_of(job: m.Job, s: Session | None = None, *,
                    peer_default: float | None = None) -> JobRequirements:
    """A job's requirements; with a session, also the real bytes its inputs take to each center
    and its tenant's peer rule (else `peer_default`)."""
    data = None
    gain = peer_default
    if s is not None:
        data = bytes_to_move(s, {job.id: (job.tenant_id, job.workdir_sha256, job.inputs)}).get(job.id)
        gain = peer_rule(s, job.tenant_id, peer_default)
    req = _requirements(tuple(getattr(job, c.key) for c in _REQ_COLUMNS), data)
    return req if gain is None else replace(req, peer_earlier_by_s=gain)


def peer_rule(s: Session, tenant_id: int | None, default: float | None) -> float | None:
    """A tenant's "peers only when earlier by" rule: its own, else the platform's `default`."""
    own = s.scalar(select(m.Tenant.peer_earlier_by_s).where(m.Tenant.id == tenant_id)) \
        if tenant_id is not None else None
    return float(own) if own is not None else default


def queued_jobs(s: Session, ids: list[int] | None = None, *,
                peer_default: float | None = None) -> list[QueuedJob]:
    """Queued jobs as the scheduler sees them (all of them, or those among `ids`), each with its
    tenant's peer rule (else `peer_default`, the platform's)."""
    c = m.Job
    cond = c.state == "QUEUED" if ids is None else (c.state == "QUEUED") & c.id.in_(ids)
    rows = s.execute(select(c.id, c.tenant_id, c.submitted_at, c.target_pool_id, *_REQ_COLUMNS,
                            c.workdir_sha256, c.inputs).where(cond)).all()
    n = 4 + len(_REQ_COLUMNS)
    data = bytes_to_move(s, {r[0]: (r[1], r[n], r[n + 1]) for r in rows if r[n] or r[n + 1]})
    own = dict(s.execute(select(m.Tenant.id, m.Tenant.peer_earlier_by_s).where(
        m.Tenant.peer_earlier_by_s.is_not(None))).all())
    out = []
    for r in rows:
        req = _requirements(tuple(r[4:n]), data.get(r[0]))
        rule = own.get(r[1])
        gain = float(rule) if rule is not None else peer_default
        if gain is not None:
            req = replace(req, peer_earlier_by_s=gain)
        out.append(QueuedJob(r[0], r[1], r[2], req, r[3]))
    return out
