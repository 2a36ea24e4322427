"""What orders and limits the pools' queues: fair share from past usage, and tenant quotas."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..domain.enums import DeviceKind
from ..domain.errors import InvalidInput, NotFound
from ..scheduling import PoolState, QueuedJob
from ..scheduling.fairshare import decayed_unit_seconds, factors
from ..store import models as m
from .centers import ACTIVE_RUN_STATES


def tenant_usage(s: Session, now: datetime, half_life_s: float) -> dict[int, float]:
    """Each tenant's decayed unit-seconds (runs that ended within ten half-lives, or still run)."""
    horizon = now - timedelta(seconds=10 * half_life_s)
    rows = s.execute(
        select(m.Job.tenant_id, m.Run.units, m.Run.started_at, m.Run.ended_at)
        .join(m.Job, m.Job.id == m.Run.job_id)
        .where(m.Run.started_at.is_not(None), or_(m.Run.ended_at.is_(None), m.Run.ended_at >= horizon))
    )
    usage: dict[int, float] = defaultdict(float)
    for tenant_id, units, started, ended in rows:
        if started is None:
            continue
        usage[tenant_id] += decayed_unit_seconds(units, started, min(ended or now, now), now, half_life_s)
    return dict(usage)


def fair_share_factors(s: Session, now: datetime, half_life_s: float) -> dict[int, float]:
    tenants = list(s.scalars(select(m.Tenant.id)))
    return factors(tenant_usage(s, now, half_life_s), tenants)


class Quotas:
    """Tenant quotas during one pass: `check` (may the job start, given what runs now) and
    `take` (count it: it starts)."""

    def __init__(self, limits: dict[tuple[int, str], int], in_use: dict[tuple[int, str], int]) -> None:
        self.limits, self.in_use = limits, in_use

    @staticmethod
    def load(s: Session) -> Quotas:
        limits = {(q.tenant_id, q.device_kind): q.max_units for q in s.scalars(select(m.TenantQuota))}
        in_use: dict[tuple[int, str], int] = defaultdict(int)
        if limits:
            rows = s.execute(
                select(m.Job.tenant_id, m.Job.device_kind, m.Run.units)
                .join(m.Job, m.Job.id == m.Run.job_id)
                .where(m.Run.state.in_(ACTIVE_RUN_STATES))
            )
            for tenant_id, kind, units in rows:
                in_use[tenant_id, kind] += units
        return Quotas(limits, in_use)

    def check(self, job: QueuedJob, pool: PoolState) -> str | None:
        key = (job.tenant_id, str(job.req.resources.device))
        limit = self.limits.get(key)
        if limit is None:
            return None
        used = self.in_use.get(key, 0)
        if used + job.req.resources.units > limit:
            return (f"tenant quota: {used} of {limit} {key[1]} units in use, "
                    f"the job needs {job.req.resources.units}")
        return None

    def take(self, job: QueuedJob, pool: PoolState) -> str | None:
        reason = self.check(job, pool)
        if reason is None:
            key = (job.tenant_id, str(job.req.resources.device))
            self.in_use[key] = self.in_use.get(key, 0) + job.req.resources.units
        return reason


# --- administration ------------------------------------------------------------------------

def list_quotas(s: Session, tenant_id: int) -> list[m.TenantQuota]:
    if s.get(m.Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id}")
    return list(s.scalars(select(m.TenantQuota).where(m.TenantQuota.tenant_id == tenant_id)
                          .order_by(m.TenantQuota.device_kind)))


def set_quota(s: Session, tenant_id: int, device_kind: str, max_units: int | None,
              now: datetime) -> m.TenantQuota | None:
    """Set (or with `max_units` None, remove) a tenant's quota for one device kind."""
    if s.get(m.Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id}")
    try:
        kind = DeviceKind(device_kind).value
    except ValueError:
        kinds = ", ".join(k.value for k in DeviceKind)
        raise InvalidInput(f"unknown device kind {device_kind!r} (one of {kinds})",
                           field="device_kind") from None
    if max_units is not None and max_units < 0:
        raise InvalidInput("max_units must not be negative", field="max_units")
    q = s.scalar(select(m.TenantQuota).where(m.TenantQuota.tenant_id == tenant_id,
                                              m.TenantQuota.device_kind == kind))
    if max_units is None:
        if q is not None:
            s.delete(q)
        return None
    if q is None:
        q = m.TenantQuota(tenant_id=tenant_id, device_kind=kind, max_units=max_units, updated_at=now)
        s.add(q)
    else:
        q.max_units, q.updated_at = max_units, now
    s.flush()
    return q
