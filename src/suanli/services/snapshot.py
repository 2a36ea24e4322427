"""Build the scheduler's snapshot from the database (pools, their free devices, running work)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.enums import CenterStatus, DeviceKind, Policy, Precision
from ..domain.model import JobRequirements, Resources
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
                  free_devices=(), free_memory_gb=())
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
            )
        )
    return states


# The job columns the scheduler needs, in the order `_requirements` takes them.
_REQ_COLUMNS = (
    m.Job.device_kind, m.Job.units, m.Job.nodes, m.Job.device_model, m.Job.memory_gb,
    m.Job.walltime_s, m.Job.precision, m.Job.policy, m.Job.priority, m.Job.domestic_only,
    m.Job.district, m.Job.deadline, m.Job.budget_fen, m.Job.data_site, m.Job.data_gb,
)


def _requirements(row: tuple[Any, ...]) -> JobRequirements:
    dev, units, nodes, model, mem, wall, prec, pol, prio, dom, dist, dl, budget, site, gb = row
    return JobRequirements(
        resources=Resources(DeviceKind(dev), units, nodes, model, mem), walltime_s=wall,
        precision=Precision(prec), policy=Policy(pol), priority=prio, domestic_only=dom,
        district=dist, deadline=dl, budget_fen=budget, data_site=site, data_gb=gb,
    )


def requirements_of(job: m.Job) -> JobRequirements:
    return _requirements(tuple(getattr(job, c.key) for c in _REQ_COLUMNS))


def queued_jobs(s: Session, ids: list[int] | None = None) -> list[QueuedJob]:
    """Queued jobs as the scheduler sees them (all of them, or those among `ids`)."""
    c = m.Job
    cond = c.state == "QUEUED" if ids is None else (c.state == "QUEUED") & c.id.in_(ids)
    rows = s.execute(select(c.id, c.tenant_id, c.submitted_at, c.target_pool_id, *_REQ_COLUMNS).where(cond))
    return [QueuedJob(r[0], r[1], r[2], _requirements(tuple(r[4:])), r[3]) for r in rows]
