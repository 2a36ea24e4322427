"""Queue order within one pool: FCFS and classic EASY backfilling, on unit counts.

Pure and fast: the engine uses it for a pool's queue and the digital twin calls the very same
function at every event. Times are seconds on any clock (the engine's epoch seconds, a trace's
seconds); estimates are the jobs' requested walltimes.

Classic EASY (Lifka 1995; Mu'alem & Feitelson 2001): start jobs in queue order while they fit.
When the head job does not fit, reserve for it the earliest time enough units come free if every
running job ends at its estimate (the *shadow time*); the units left over at that time are the
*extra* units. A later job may start now if it fits in the free units and either ends by the
shadow time or uses no more than the extra units (which it then takes from them). This reserves a
time and a count, not particular nodes (AccaSim's `EASYBackfilling` reserves nodes; see README).
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter


@dataclass(frozen=True, slots=True)
class Waiting:
    """A queued job: its units and its runtime estimate (seconds)."""

    units: int
    estimate_s: float


@dataclass(frozen=True, slots=True)
class Busy:
    """Units held by a running job until its estimated end."""

    units: int
    ends_at: float


_END = attrgetter("ends_at")
by_end = _END  # the sort key of a running list


@dataclass(slots=True)
class Plan:
    starts: list[int] = field(default_factory=list)  # indices into the queue, in start order
    shadow_time: float | None = None  # the head job's reservation, when it waits
    extra_units: int = 0
    head: int | None = None  # index of the blocked head job


def shadow(free: int, running: Sequence[Busy], units: int) -> tuple[float, int]:
    """When `units` are free at the latest if every running job ends at its estimate, and how
    many units are spare then. `running` must be sorted by `ends_at`."""
    available = free
    for k, b in enumerate(running):
        if available >= units:
            break
        available += b.units
        if available >= units:
            # every job ending at that same instant frees its units too
            for later in running[k + 1:]:
                if later.ends_at != b.ends_at:
                    break
                available += later.units
            return b.ends_at, available - units
    if available >= units:
        return -math.inf, available - units
    return math.inf, 0  # more than the pool will ever have


def plan(free: int, running: Sequence[Busy], queue: Sequence[Waiting], now: float, *,
         backfill: bool = True) -> Plan:
    """Which queued jobs start now (FCFS when `backfill` is False, else classic EASY).

    `running` must be sorted by `ends_at` (callers keep it so; `insort(…, key=by_end)`)."""
    out = Plan()
    i, n = 0, len(queue)
    started: list[Busy] = []
    while i < n and queue[i].units <= free:
        free -= queue[i].units
        out.starts.append(i)
        started.append(Busy(queue[i].units, now + queue[i].estimate_s))
        i += 1
    if i >= n:
        return out
    out.head = i
    ordered: Sequence[Busy] = running
    if started:
        ordered = merged = list(running)
        for b in started:
            insort(merged, b, key=_END)
    out.shadow_time, out.extra_units = shadow(free, ordered, queue[i].units)
    if not backfill or free == 0:
        return out
    extra = out.extra_units
    for j in range(i + 1, n):
        w = queue[j]
        if w.units > free:
            continue
        if now + w.estimate_s <= out.shadow_time:
            free -= w.units
        elif w.units <= extra:
            free -= w.units
            extra -= w.units
        else:
            continue
        out.starts.append(j)
        if free == 0:
            break
    return out
