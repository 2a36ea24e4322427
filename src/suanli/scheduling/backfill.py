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
from bisect import bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter


# Plain (not frozen) slotted classes: a simulation makes hundreds of thousands of them, and a
# frozen dataclass's constructor is 2.5× slower.
@dataclass(slots=True)
class Waiting:
    """A queued job: its units and its runtime estimate (seconds)."""

    units: int
    estimate_s: float


@dataclass(slots=True)
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
    extra_left: int = 0  # extra units not taken by backfilled jobs
    reservations: list[float] | None = None  # conservative: every job's reserved start


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
    starts = out.starts
    i, n = 0, len(queue)
    while i < n:
        units = queue[i].units
        if units > free:
            break
        free -= units
        starts.append(i)
        i += 1
    if i >= n:
        return out
    out.head = i
    ordered: Sequence[Busy] = running
    if i:  # the jobs just started hold their units until their estimated ends too
        ordered = merged = list(running)
        for k in range(i):
            insort(merged, Busy(queue[k].units, now + queue[k].estimate_s), key=_END)
    out.shadow_time, out.extra_units = shadow(free, ordered, queue[i].units)
    out.extra_left = out.extra_units
    if backfill and free > 0:
        _, out.extra_left = backfill_from(queue, i + 1, free, out.shadow_time, out.extra_units, now,
                                             out.starts)
    return out


def backfill_from(queue: Sequence[Waiting], first: int, free: int, shadow_time: float, extra: int,
                  now: float, starts: list[int]) -> tuple[int, int]:
    """The EASY rule over `queue[first:]`: a job starts now if it fits in the free units and either
    ends by the head's shadow time or fits in the extra units (which it then uses up). Appends
    the started indices to `starts`; returns the free and extra units left.

    A pool that has only gained queued jobs since its last plan (no job ended, so the free units,
    the shadow time and the extra units are those the plan left) calls this for the new jobs only:
    every job it scanned before still cannot start, as `now` only moved on."""
    for j in range(first, len(queue)):
        w = queue[j]
        if w.units > free:
            continue
        if now + w.estimate_s <= shadow_time:
            free -= w.units
        elif w.units <= extra:
            free -= w.units
            extra -= w.units
        else:
            continue
        starts.append(j)
        if free == 0:
            break
    return free, extra


def forecast(free: int, running: Sequence[Busy], queue: Sequence[Waiting], now: float, *,
             backfill: bool = True, upto: int | None = None) -> list[float]:
    """When each queued job starts if every job runs exactly its estimate (what Slurm's
    `--test-only` answers): the planner itself, replayed forward from `now` over the running jobs'
    and the started jobs' estimated ends. `math.inf` for a job that never fits. With `upto`, stop
    once the first `upto` queued jobs have their answer (the rest stay inf)."""
    starts = [math.inf] * len(queue)
    want = len(queue) if upto is None else min(upto, len(queue))
    holds = sorted(running, key=_END)
    pending = list(range(len(queue)))  # queue indices still waiting, in queue order
    t = now
    answered = 0
    while pending and answered < want:
        while holds and holds[0].ends_at <= t:  # a job past its estimate ends any moment
            free += holds.pop(0).units
        p = plan(free, holds, [queue[k] for k in pending], t, backfill=backfill)
        if p.starts:
            for i in p.starts:
                k = pending[i]
                starts[k] = t
                if k < want:
                    answered += 1
                w = queue[k]
                insort(holds, Busy(w.units, t + w.estimate_s), key=_END)
                free -= w.units
            gone = set(p.starts)
            pending = [k for i, k in enumerate(pending) if i not in gone]
            continue
        if not holds:
            break  # nothing runs and nothing fits: the rest never start
        t = holds[0].ends_at
    return starts


def conservative(free: int, running: Sequence[Busy], queue: Sequence[Waiting], now: float) -> Plan:
    """Conservative backfilling (Mu'alem & Feitelson 2001): every queued job, in order, gets the
    earliest reservation that fits the pool's free-units profile for its whole estimate without
    moving any earlier job's reservation; the jobs whose reservation is now start now. Slower than
    EASY (every job is reserved, not only the head) but no job is ever delayed by a later one.
    `Plan.starts` are the jobs starting now; `Plan.reservations[i]` is job i's reserved start."""
    times = [now]
    frees = [free]
    for b in sorted(running, key=_END):
        end = max(b.ends_at, now)
        if end == times[-1]:
            frees[-1] += b.units
        else:
            times.append(end)
            frees.append(frees[-1] + b.units)
    out = Plan()
    out.reservations = []
    for i, w in enumerate(queue):
        start = _earliest(times, frees, w.units, w.estimate_s)
        out.reservations.append(start)
        if math.isinf(start):
            continue
        _reserve(times, frees, start, start + w.estimate_s, w.units)
        if start == now:
            out.starts.append(i)
        elif out.head is None:
            out.head, out.shadow_time = i, start
    return out


def _earliest(times: list[float], frees: list[int], units: int, duration: float) -> float:
    n = len(times)
    for i in range(n):
        if frees[i] < units:
            continue
        end = times[i] + duration
        j = i + 1
        while j < n and times[j] < end and frees[j] >= units:
            j += 1
        if j >= n or times[j] >= end:
            return times[i]
    return math.inf


def _split(times: list[float], frees: list[int], t: float) -> int:
    """Index of the breakpoint at t (inserted if needed)."""
    k = bisect_right(times, t) - 1
    if times[k] == t:
        return k
    times.insert(k + 1, t)
    frees.insert(k + 1, frees[k])
    return k + 1


def _reserve(times: list[float], frees: list[int], start: float, end: float, units: int) -> None:
    a = _split(times, frees, start)
    b = _split(times, frees, end)
    for k in range(a, b):
        frees[k] -= units
