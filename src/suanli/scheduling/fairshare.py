"""Fair share between tenants: decayed past usage, and the order it gives a pool's queue.

A tenant's usage is the unit-seconds its runs used, each second weighted by 2^(−age / half-life),
so yesterday's heavy user is not punished forever. Every tenant has an equal share. A tenant's
fair-share factor is 2^(−usage / mean usage) ∈ (0, 1]: 1 for a tenant that used nothing, 0.5 for
one that used the mean, smaller for heavier users (Slurm's classic formula with equal shares).
Queue order: priority first, then the factor (higher first, rounded to 0.01 so that small
differences do not reorder), then submission time — so fair share decides between equal
priorities, and within a tenant the queue stays first come, first served.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from .snapshot import QueuedJob


def decayed_unit_seconds(units: int, start: datetime, end: datetime, now: datetime,
                         half_life_s: float) -> float:
    """∫ units · 2^(−(now − t)/h) dt over [start, end] (closed form)."""
    if end <= start:
        return 0.0
    a = (now - end).total_seconds()
    b = (now - start).total_seconds()
    k = math.log(2) / half_life_s
    return units * (math.exp(-k * a) - math.exp(-k * b)) / k


def factors(usage: Mapping[int, float], tenants: Iterable[int]) -> dict[int, float]:
    """Fair-share factor per tenant (1 = used nothing)."""
    ids = set(tenants) | set(usage)
    if not ids:
        return {}
    mean = sum(usage.values()) / len(ids)
    if mean <= 0:
        return {t: 1.0 for t in ids}
    return {t: 2 ** (-usage.get(t, 0.0) / mean) for t in ids}


def rank(priority: int, factor: float, submitted_at: datetime, job_id: int) -> tuple[object, ...]:
    """A queued job's place in the queue order: priority, fair-share factor, submission, id."""
    return (-priority, -round(factor, 2), submitted_at, job_id)


def order(fair: Mapping[int, float]) -> Callable[[QueuedJob], tuple[object, ...]]:
    """The queue order key (`rank`) of a queued job, given each tenant's fair-share factor."""
    def key(job: QueuedJob) -> tuple[object, ...]:
        return rank(job.req.priority, fair.get(job.tenant_id, 1.0), job.submitted_at, job.job_id)
    return key
