"""Network placement: which pool of the city a job goes to, before it queues there.

Pure and shared: the platform's engine and the digital twin both call `nominate`/`choose` with
the pools as `PoolView`s. For each feasible pool the job's *estimated finish* is

    start estimate + run time on that pool (+ data transfer when the job names a data site)

where the start estimate comes from the pool's running jobs' estimated ends (when enough units
come free: the same shadow computation EASY uses) plus the work already queued there spread over
the pool (queued unit-seconds / units). Price and energy come from the pool's figures. The job's
policy ranks the pools (fastest: finish; cheapest: cost; greenest: energy; balanced: a weighted
sum of the three relative to the best); the first few form the nomination, the first is chosen.
A job is committed to one pool: never raced on several.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .backfill import Busy, shadow

BALANCED = {"finish": 0.5, "cost": 0.3, "energy": 0.2}
POLICIES = ("fastest", "cheapest", "greenest", "balanced")


@dataclass(slots=True)
class PoolView:
    """One pool as placement sees it (times in seconds on the caller's clock)."""

    key: int  # the caller's index or id
    device: str  # device kind: cpu, gpu, npu, ...
    capacity: int
    free: int
    running: Sequence[Busy] = ()  # sorted by estimated end
    queued_unit_s: float = 0.0  # Σ units × estimate of the jobs queued there
    speed: float = 1.0  # relative speed for this job class: run time divides by it
    price_fen_per_unit_hour: float = 0.0
    watts_per_unit: float = 0.0
    pue: float = 1.0
    site: str = ""  # where the pool is, for data transfer
    online: bool = True
    # The pool's EASY reservation for its blocked head job, when it has one: (shadow time, extra
    # units). A job that fits the free units and ends by the shadow time, or fits in the extra
    # units, would be backfilled at once.
    reservation: tuple[float, int] | None = None

    def start_estimate(self, units: int, now: float, estimate_s: float = math.inf) -> float:
        """When a job of `units` (running `estimate_s` here) could start if it queued now (≥ now;
        inf if never)."""
        if units > self.capacity:
            return math.inf
        if units <= self.free:
            if self.queued_unit_s <= 0:
                return now
            if self.reservation is not None:
                shadow_time, extra = self.reservation
                if now + estimate_s <= shadow_time or units <= extra:
                    return now
        t_fit, _ = shadow(self.free, self.running, units)
        return max(now, t_fit, self.backlog_cleared(now))

    def backlog_cleared(self, now: float) -> float:
        """When the work queued ahead (unit-seconds) is done if it flows into the units as they
        come free: the free units work from now, each running job's units from its estimated end."""
        work = self.queued_unit_s
        if work <= 0:
            return now
        t, avail = now, self.free
        for b in self.running:
            end = b.ends_at if b.ends_at > now else now
            if avail > 0 and work <= avail * (end - t):
                return t + work / avail
            work -= avail * (end - t)
            t, avail = end, avail + b.units
        return t + work / avail if avail > 0 else math.inf


@dataclass(slots=True)
class Estimate:
    key: int
    start: float
    runtime_s: float
    transfer_s: float
    finish: float
    cost_fen: float
    energy_wh: float
    score: float = 0.0


@dataclass(slots=True)
class JobAsk:
    """What placement needs to know about a job."""

    units: int
    estimate_s: float  # walltime on a speed-1 pool
    devices: frozenset[str] = field(default_factory=lambda: frozenset({"cpu"}))
    policy: str = "fastest"
    data_site: str = ""
    data_gb: float = 0.0


def transfer_s(ask: JobAsk, view: PoolView, bandwidth_gbps: dict[tuple[str, str], float] | None,
               default_gbps: float = 10.0) -> float:
    """Seconds to move the job's input from its data site to the pool's site (0 when local)."""
    if not ask.data_gb or not ask.data_site or ask.data_site == view.site:
        return 0.0
    gbps = default_gbps
    if bandwidth_gbps:
        gbps = bandwidth_gbps.get((ask.data_site, view.site), bandwidth_gbps.get((view.site, ask.data_site),
                                                                                 default_gbps))
    return ask.data_gb * 8 / gbps


def feasible(ask: JobAsk, view: PoolView) -> bool:
    return view.online and view.device in ask.devices and ask.units <= view.capacity


def estimates(ask: JobAsk, views: Sequence[PoolView], now: float,
              bandwidth_gbps: dict[tuple[str, str], float] | None = None) -> list[Estimate]:
    """The estimate on every feasible pool, scored by the job's policy (lower is better)."""
    out: list[Estimate] = []
    for v in views:
        if not feasible(ask, v):
            continue
        run = ask.estimate_s / v.speed
        start = v.start_estimate(ask.units, now, run)
        if not math.isfinite(start):
            continue
        move = transfer_s(ask, v, bandwidth_gbps)
        start = max(start, now + move)  # input must arrive before the job starts
        cost = ask.units * v.price_fen_per_unit_hour * run / 3600
        energy = ask.units * v.watts_per_unit * run * v.pue / 3600
        out.append(Estimate(v.key, start, run, move, start + run, cost, energy))
    _score(ask.policy, out, now)
    return out


def policy_scores(policy: str, finish: Sequence[float], cost: Sequence[float], energy: Sequence[float],
                  *, digits: int | None = None) -> list[float]:
    """Each candidate's score under the job's policy, lower is better: `fastest` the finish (a
    duration from now), `cheapest` the cost, `greenest` the energy, `balanced` 0.5·finish/best +
    0.3·cost/best + 0.2·energy/best (rounded to `digits` when given). One formula for the engine's
    placement and the twin's."""
    if policy == "fastest":
        return list(finish)
    if policy == "cheapest":
        return list(cost)
    if policy == "greenest":
        return list(energy)
    if policy == "balanced":
        bf, bc, be = min(finish) or 1.0, min(cost) or 1.0, min(energy) or 1.0
        wf, wc, we = BALANCED["finish"], BALANCED["cost"], BALANCED["energy"]
        out = [wf * f / bf + wc * c / bc + we * e / be for f, c, e in zip(finish, cost, energy, strict=True)]
        return out if digits is None else [round(x, digits) for x in out]
    raise ValueError(f"unknown placement policy {policy!r} (one of {', '.join(POLICIES)})")


def _score(policy: str, ests: list[Estimate], now: float) -> None:
    if not ests:
        return
    scores = policy_scores(policy, [e.finish - now for e in ests], [e.cost_fen for e in ests],
                           [e.energy_wh for e in ests])
    for e, score in zip(ests, scores, strict=True):
        e.score = score


def _rank(e: Estimate) -> tuple[float, float, float, int]:
    return (e.score, e.finish, e.cost_fen, e.key)


def nominate(ask: JobAsk, views: Sequence[PoolView], now: float, k: int = 3,
             bandwidth_gbps: dict[tuple[str, str], float] | None = None) -> list[Estimate]:
    """The `k` best pools for the job, best first (empty when none is feasible)."""
    return sorted(estimates(ask, views, now, bandwidth_gbps), key=_rank)[:k]


def choose(ask: JobAsk, views: Sequence[PoolView], now: float,
           bandwidth_gbps: dict[tuple[str, str], float] | None = None) -> Estimate | None:
    """The one pool the job is committed to (None when no pool can ever run it)."""
    ests = estimates(ask, views, now, bandwidth_gbps)
    return min(ests, key=_rank) if ests else None


# --- Late binding: a waiting job moves to a pool that can start it now ---------------------------

@dataclass(slots=True)
class Opening:
    """A pool's room after its own queue was planned: its free units, and the EASY reservation of
    its blocked head job (the shadow time and the extra units), when one waits. A job from
    another pool may start here only as EASY would backfill it: it fits the free units and ends
    by the shadow time, or fits in the extra units. A pool whose own queue waits under FCFS or
    conservative backfilling gives no room (`closed`)."""

    free: int
    shadow_time: float = math.inf
    extra: int = 0

    @classmethod
    def closed(cls) -> Opening:
        return cls(0, -math.inf, 0)

    def admits(self, units: int, run_s: float, now: float) -> bool:
        return units <= self.free and (now + run_s <= self.shadow_time or units <= self.extra)

    def take(self, units: int, run_s: float, now: float) -> None:
        if now + run_s > self.shadow_time:
            self.extra -= units
        self.free -= units


@dataclass(slots=True)
class Option:
    """One pool a waiting job could run on: its run time, cost and energy there, and how long
    that pool's planner counts it as holding its units (its estimate there; default the run
    time)."""

    key: int
    run_s: float
    cost: float = 0.0
    energy: float = 0.0
    hold_s: float | None = None

    @property
    def holds_s(self) -> float:
        return self.run_s if self.hold_s is None else self.hold_s


def may_move(policy: str, here: Option, there: Option) -> bool:
    """Whether a job waiting at `here` may move to `there`, which starts it now: always for
    `fastest` and `balanced` (it starts now instead of waiting); for `cheapest` and `greenest`
    only to a pool that costs (or uses) no more — the user chose to wait for the cheaper one."""
    if policy == "cheapest":
        return there.cost <= here.cost
    if policy == "greenest":
        return there.energy <= here.energy
    return True


def rank_options(policy: str, options: Sequence[Option]) -> list[Option]:
    """The options best first by the job's policy (ties: the shorter run, then the key)."""
    if len(options) < 2:
        return list(options)
    scores = policy_scores(policy, [o.run_s for o in options], [o.cost for o in options],
                           [o.energy for o in options])
    order = sorted(range(len(options)), key=lambda i: (scores[i], options[i].run_s, options[i].key))
    return [options[i] for i in order]


def pick_opening(policy: str, units: int, here: Option, ranked: list[Option],
                 openings: dict[int, Opening], now: float,
                 fits: Callable[[int], bool] | None = None) -> Option | None:
    """Late binding, the one rule of the platform's engine and the twin: a job waiting at pool
    `here` (not started by that pool's planner this pass) moves to the first pool of `ranked`
    (its feasible pools, best first by its policy: `rank_options`) that has room for it now
    (`Opening.admits`; `fits`, when given, checks the pool's nodes too) and that its policy
    lets it move to (`may_move`). None: it stays. A started job never moves, and a job is only
    ever at one pool: the caller takes it out of `here`'s queue and starts it at the pool
    returned, in the same instant.

    Pools without room are dropped from `ranked` as they are met: room only shrinks until the
    pools plan again, so a caller may keep one list per job shape for a whole pass."""
    found: Option | None = None
    dropped: list[int] = []
    for i, o in enumerate(ranked):
        if o.key == here.key:
            continue
        if not may_move(policy, here, o):
            break  # only cheapest and greenest refuse, and `ranked` is by that very cost: so do the rest
        op = openings.get(o.key)
        if op is None or not op.admits(units, o.holds_s, now) or (fits is not None and not fits(o.key)):
            dropped.append(i)
            continue
        found = o
        break
    for i in reversed(dropped):
        del ranked[i]
    return found
