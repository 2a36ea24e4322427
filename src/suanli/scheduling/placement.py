"""Scheduler v1: filter feasible pools, score them by the job's policy, place greedily by priority.

The whole pass is a pure function: `schedule(pools, queue, now) -> list[Decision]`.

* Filter: device kind and model, domestic-only, precision supported, units and nodes (a gang job
  gets all its nodes in one pool), memory per node, the pool's walltime limit, district, the
  pool's CPU architecture, features and environments (`constraints`, `environment`), and the
  center's status (offline or draining centers get no new work).
* Score: the run time on a pool is the job's walltime scaled by the pool's speed at the job's
  precision relative to the fastest feasible pool (the walltime is read as the time on the fastest
  device; it stays the hard limit everywhere). Wait is 0 when the job fits now, else the time until
  enough running units reach their walltime. From these: finish = wait + run time, cost = units ×
  price × run time, energy = units × watts × run time × PUE.
* Policy: `fastest` ranks by finish, `cheapest` by cost, `greenest` by energy (ties by finish),
  `balanced` by 0.5·finish/best + 0.3·cost/best + 0.2·energy/best.
* Queue order: priority (high first), then submission time, then id. A job goes to its best pool if
  it fits there now; otherwise it waits for that pool (v1 has no reservations: later jobs may still
  use free units; EASY backfilling comes with the scheduler engine).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from ..domain.enums import CenterStatus, Policy
from ..domain.model import JobRequirements
from ..domain.money import yuan
from .backfill import Busy, Waiting, by_end, conservative, plan
from .network import BALANCED, Opening, Option, PoolView, pick_opening, policy_scores, rank_options
from .snapshot import PoolState, QueuedJob, RunningAllocation


@dataclass(frozen=True, slots=True)
class Quote:
    """A peer platform's answer for one job shape on one of its pools (federation): when the job
    would start and finish there, and what the peer would bill us (`wait_s` None: it cannot run
    it now, `reason` says why)."""

    wait_s: float | None
    finish_s: float | None = None
    cost_fen: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"wait_s": self.wait_s, "finish_s": self.finish_s, "cost_fen": self.cost_fen,
                "reason": self.reason}


QuoteKey = tuple[tuple[object, ...], int]  # (the job's shape, the pool id)
AWAITING_QUOTE = "awaiting the peer's quote"


@dataclass(slots=True)
class Candidate:
    """One pool as seen for one job: whether it could run it, why not, and its score components."""

    pool_id: int
    pool: str
    center_id: int
    feasible: bool
    reasons: list[str] = field(default_factory=list)
    fits_now: bool = False
    wait_s: float | None = None
    runtime_s: float | None = None
    finish_s: float | None = None
    cost_fen: int | None = None
    energy_wh: int | None = None
    score: float | None = None
    chosen: bool = False
    misses_deadline: bool = False
    transfer_s: float = 0.0  # moving the job's input data here
    # The run time here is over the job's walltime: a slower device than the fastest feasible
    # pool (the walltime is read as time there); the job would be stopped at its walltime.
    beyond_walltime: bool = False
    # Unrounded figures used for ranking (the fen and Wh above are for display).
    cost_exact: float = 0.0
    energy_exact: float = 0.0
    quote: Quote | None = None  # a peer platform's pool: the peer's own answer

    def as_dict(self) -> dict[str, object]:
        return {
            "pool_id": self.pool_id,
            "pool": self.pool,
            "center_id": self.center_id,
            "feasible": self.feasible,
            "reasons": list(self.reasons),
            "fits_now": self.fits_now,
            "wait_s": self.wait_s,
            "runtime_s": self.runtime_s,
            "finish_s": self.finish_s,
            "cost_fen": self.cost_fen,
            "energy_wh": self.energy_wh,
            "score": self.score,
            "chosen": self.chosen,
            "misses_deadline": self.misses_deadline,
            "transfer_s": round(self.transfer_s, 3),
            "beyond_walltime": self.beyond_walltime,
            **({"quote": self.quote.as_dict()} if self.quote is not None else {}),
        }


@dataclass(slots=True)
class Decision:
    """The outcome for one queued job in one pass."""

    job_id: int
    policy: Policy
    candidates: list[Candidate]
    pool_id: int | None = None  # set when the job is placed now
    nodes: tuple[int, ...] = ()
    devices: tuple[int, ...] = ()
    estimated_start: datetime | None = None
    message: str = ""
    target_pool_id: int | None = None  # the pool the job is committed to (queues there)
    position: int | None = None  # 1-based place in that pool's queue, while waiting
    # The planner started it, but it could not start (no whole nodes, or a quota): the units the
    # planner gave it are free after all, so the next pass must plan the whole pool again.
    deferred: bool = False
    moved_from: int | None = None  # late binding: the pool it waited at before this pass moved it

    @property
    def placed(self) -> bool:
        return self.pool_id is not None

    def explanation(self) -> dict[str, object]:
        return {
            "policy": self.policy.value,
            "message": self.message,
            "chosen_pool_id": self.pool_id,
            "target_pool_id": self.target_pool_id,
            "position": self.position,
            "moved_from_pool_id": self.moved_from,
            "estimated_start": self.estimated_start.isoformat() if self.estimated_start else None,
            "weights": BALANCED if self.policy is Policy.BALANCED else None,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def static_reasons(req: JobRequirements, pool: PoolState) -> list[str]:
    """Why this pool could never run the job, whatever its load (empty when it could)."""
    spec = pool.spec
    res = req.resources
    reasons: list[str] = ["withdrawn by the platform that offered it"] if pool.withdrawn else []
    other_device = spec.device_kind != res.device
    if other_device:
        reasons.append(f"device is {spec.device_kind}, job needs {res.device}")
    if res.model and res.model.lower() != spec.device_model.lower():
        reasons.append(f"model is {spec.device_model}, job needs {res.model}")
    if req.domestic_only and not spec.domestic:
        reasons.append("not a domestic (国产) device")
    if spec.tflops(req.precision) is None and not other_device:
        reasons.append(f"{spec.device_model} has no {req.precision} capability")
    if res.units % res.nodes:
        reasons.append(f"{res.units} units cannot be split evenly over {res.nodes} nodes")
    elif res.units_per_node > spec.units_per_node:
        hint = ""
        if res.nodes == 1 and res.units % spec.units_per_node == 0 and not other_device:
            need = res.units // spec.units_per_node
            hint = (f" (ask for nodes={need} to spread it)" if need <= spec.nodes else
                    f" (the pool has {spec.nodes} nodes × {spec.units_per_node} = "
                    f"{spec.nodes * spec.units_per_node} units at most)")
        reasons.append(
            f"needs {res.units_per_node} units per node, pool has {spec.units_per_node} per node"
            + hint
        )
    if res.nodes > spec.nodes:
        reasons.append(f"needs {res.nodes} nodes, pool has {spec.nodes}")
    if res.memory_gb is not None and res.memory_gb > spec.memory_gb_per_node:
        reasons.append(
            f"needs {res.memory_gb} GB per node, pool has {spec.memory_gb_per_node} GB per node"
        )
    if req.walltime_s > spec.max_walltime_s:
        reasons.append(f"walltime {req.walltime_s}s over the pool's limit {spec.max_walltime_s}s")
    if req.district and req.district != pool.district:
        reasons.append(f"district is {pool.district or 'unknown'}, job requires {req.district}")
    reasons.extend(req.unmet(spec))
    reasons.extend(req.constraints.kept_from(pool.center_slug, pool.pool_name))
    if req.data is not None:
        reasons.extend(f"dataset {name} is not at this center"
                       for name in req.data.absent_at(pool.center_slug))
    return reasons


def _status_reasons(pool: PoolState) -> list[str]:
    if pool.center_status is CenterStatus.OFFLINE:
        return ["center is offline"]
    if pool.center_status is CenterStatus.DRAINING:
        return ["center is draining (no new placements)"]
    return []


def running_busy(running: Sequence[RunningAllocation], now: datetime) -> list[Busy]:
    """Running allocations as the queue planner sees them: units held until the walltime's end,
    in seconds from `now`, sorted by that end."""
    return sorted((Busy(a.units, (a.ends_by - now).total_seconds()) for a in running), key=by_end)


class _WorkingPool:
    """Mutable copy of a pool's free devices during one pass, so a pass never oversubscribes."""

    __slots__ = ("_busy", "_fits", "free_devices", "free_memory", "running", "state", "version")

    def __init__(self, state: PoolState) -> None:
        self.state = state
        self.free_devices: list[frozenset[int]] = list(state.free_devices)  # copy on write
        self.free_memory = list(state.free_memory_gb)
        self.running = list(state.running)
        self.version = 0  # grows on every take(); find_nodes answers are memoised per version
        self._fits: dict[tuple[int, int, int], tuple[int, list[int] | None]] = {}
        self._busy: list[Busy] | None = None

    def busy(self, now: datetime) -> list[Busy]:
        """The running allocations as the queue planner sees them: units until the estimated end
        (seconds from `now`), sorted. Taken before this pass placed anything."""
        if self._busy is None:
            self._busy = running_busy(self.state.running, now)
        return self._busy

    @property
    def free_units(self) -> int:
        return sum(len(f) for f in self.free_devices)

    def find_nodes(self, req: JobRequirements) -> list[int] | None:
        """Best fit: the nodes with the fewest free units that still hold the per-node share."""
        res = req.resources
        key = (res.units_per_node, res.nodes, res.memory_gb or 0)
        hit = self._fits.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        need_units, need_nodes, need_mem = key
        found: list[int] | None
        if need_nodes == 1:
            best, best_free = -1, 1 << 62
            for n, free in enumerate(self.free_devices):
                k = len(free)
                if need_units <= k < best_free and self.free_memory[n] >= need_mem:
                    best, best_free = n, k
                    if k == need_units:
                        break
            found = [best] if best >= 0 else None
        else:
            fitting = [
                n for n, free in enumerate(self.free_devices)
                if len(free) >= need_units and self.free_memory[n] >= need_mem
            ]
            if len(fitting) < need_nodes:
                found = None
            else:
                fitting.sort(key=lambda n: (len(self.free_devices[n]), n))
                found = sorted(fitting[:need_nodes])
        self._fits[key] = (self.version, found)
        return found

    def take(
        self, req: JobRequirements, nodes: list[int], now: datetime
    ) -> tuple[int, ...]:
        res = req.resources
        self.version += 1
        devices: list[int] = []
        for n in nodes:
            chosen = sorted(self.free_devices[n])[: res.units_per_node]
            self.free_devices[n] = self.free_devices[n].difference(chosen)
            self.free_memory[n] -= res.memory_gb or 0
            devices.extend(chosen)
        self.running.append(
            RunningAllocation(res.units, now + timedelta(seconds=req.walltime_s), tuple(devices))
        )
        return tuple(devices)

    def wait_estimate(self, req: JobRequirements, now: datetime) -> float:
        """Seconds until the job could start here, assuming running jobs use their full walltime.

        Replays the running jobs' ends in order, giving their devices back to their nodes, until
        enough nodes hold the job's per-node share (memory is not modelled here). Units of runs
        whose devices are unknown count as a floating reserve.
        """
        res = req.resources
        per = max(1, res.units_per_node)
        upn = self.state.spec.units_per_node
        free = [len(f) for f in self.free_devices]
        floating = 0

        def fits() -> bool:
            whole = sum(1 for f in free if f >= per)
            return whole + floating // max(1, per) >= res.nodes

        for alloc in sorted(self.running, key=lambda a: a.ends_by):
            if alloc.devices:
                for d in alloc.devices:
                    node = d // upn
                    if 0 <= node < len(free):
                        free[node] = min(upn, free[node] + 1)
            else:
                floating += alloc.units
            if fits():
                return max(0.0, (alloc.ends_by - now).total_seconds())
        return math.inf


def _score(policy: Policy, cands: list[Candidate]) -> None:
    feasible = [c for c in cands if c.feasible]
    if not feasible:
        return
    scores = policy_scores(policy, [c.finish_s or 0.0 for c in feasible], [c.cost_exact for c in feasible],
                           [c.energy_exact for c in feasible], digits=6)
    for c, score in zip(feasible, scores, strict=True):
        c.score = score


def _evaluate(
    job: QueuedJob, pools: list[_WorkingPool], now: datetime,
    backlog: Mapping[int, float] | None = None,
    quotes: Mapping[QuoteKey, Quote] | None = None,
) -> list[Candidate]:
    req = job.req
    cands: list[Candidate] = []
    speeds: dict[int, float] = {}
    for wp in pools:
        st = wp.state
        reasons = static_reasons(req, st) + _status_reasons(st)
        cands.append(Candidate(st.pool_id, st.label, st.center_id, not reasons, reasons))
        if not reasons:
            speeds[st.pool_id] = st.spec.tflops(req.precision) or 0.0
    ref_speed = max(speeds.values(), default=0.0)
    units = req.resources.units
    for wp, c in zip(pools, cands, strict=True):
        if not c.feasible:
            continue
        st = wp.state
        speed = speeds[st.pool_id]
        runtime = req.walltime_s * (ref_speed / speed) if speed > 0 else math.inf
        c.fits_now = wp.find_nodes(req) is not None
        wait = 0.0 if c.fits_now else wp.wait_estimate(req, now)
        if st.peer and quotes is not None:  # the peer's own answer: its queue, its other users
            q = quotes.get((shape_key(req), st.pool_id))
            if q is None or q.wait_s is None:
                c.feasible = False
                c.reasons.append(AWAITING_QUOTE if q is None else
                                 f"the peer cannot run it now: {q.reason or 'no reason given'}")
                c.quote = q
                continue
            c.quote = q
            wait = max(wait, q.wait_s)
            c.fits_now = c.fits_now and q.wait_s == 0.0
        c.transfer_s = transfer_seconds(req, st)
        if c.transfer_s:  # the data must arrive before the job can start there
            wait = max(wait, c.transfer_s)
            c.fits_now = c.fits_now and c.transfer_s < 1.0
        queued = backlog.get(st.pool_id, 0.0) if backlog else 0.0
        if queued > 0:  # work committed to this pool before this job: it queues behind it
            view = PoolView(st.pool_id, str(st.spec.device_kind), st.spec.total_units, wp.free_units,
                            wp.busy(now), queued)
            wait = max(wait, view.backlog_cleared(0.0))
            c.fits_now = c.fits_now and wait == 0.0
        c.wait_s = round(wait, 3) if math.isfinite(wait) else None
        c.runtime_s = round(runtime, 3)
        c.beyond_walltime = runtime > req.walltime_s
        c.finish_s = round(wait + runtime, 3) if math.isfinite(wait) else None
        c.cost_exact = units * st.spec.price_fen_per_unit_hour * runtime / 3600
        c.energy_exact = units * st.spec.watts_per_unit * runtime * st.pue / 3600
        c.cost_fen = round(c.cost_exact)
        c.energy_wh = round(c.energy_exact)
        if c.finish_s is None:
            c.feasible = False
            c.reasons.append("cannot free enough units")
        elif req.budget_fen is not None and c.cost_exact > req.budget_fen:
            c.feasible = False
            c.reasons.append(f"cost estimate {yuan(c.cost_fen)} is over the budget of "
                             f"{yuan(req.budget_fen)}")
        if c.feasible and req.deadline is not None and c.finish_s is not None:
            c.misses_deadline = now + timedelta(seconds=c.finish_s) > req.deadline
    if req.peer_earlier_by_s is not None:
        _home_first(req.peer_earlier_by_s, [(wp.state, c) for wp, c in zip(pools, cands,
                                                                          strict=True)])
    _score(req.policy, cands)
    return cands


def _home_first(gain_s: float, cands: list[tuple[PoolState, Candidate]]) -> None:
    """HTCondor's flocking, made explicit: a peer platform's pool stays a candidate only when
    it finishes the job more than `gain_s` earlier than the best home pool (always when no home
    pool can run it)."""
    home = [c.finish_s for st, c in cands if c.feasible and not st.peer and c.finish_s is not None]
    if not home:
        return
    best = min(home)
    for st, c in cands:
        if st.peer and c.feasible and c.finish_s is not None and c.finish_s >= best - gain_s:
            c.feasible = False
            c.reasons.append(f"home first: a home pool finishes within {gain_s:g} s of it "
                             f"(peers only when more than {gain_s:g} s earlier)")


def _rank_key(c: Candidate) -> tuple[bool, float, float, int]:
    """Best first: pools that meet the job's deadline, then the policy's score."""
    return (c.misses_deadline, c.score if c.score is not None else math.inf, c.finish_s or math.inf,
            c.pool_id)


def shape_key(req: JobRequirements) -> tuple[object, ...]:
    """What decides whether a job fits a pool now (not its policy or priority)."""
    return (req.resources, req.walltime_s, req.precision, req.domestic_only, req.district,
            req.data_site, req.data_gb, req.constraints, req.environment, req.data,
            req.peer_earlier_by_s)


NETWORK_GBPS = 10.0  # the city network's bandwidth between two centers, for moving a job's data


def transfer_seconds(req: JobRequirements, pool: PoolState, gbps: float = NETWORK_GBPS) -> float:
    """Time to move the job's input data to the pool's center (0 where the data is): its real
    bytes when the job brings artifacts or datasets, else the typed `data_gb` from `data_site`."""
    if req.data is not None:
        return req.data.bytes_to(pool.center_slug) * 8 / (gbps * 1e9)
    if not req.data_site or not req.data_gb or req.data_site == pool.center_slug:
        return 0.0
    return req.data_gb * 8 / gbps


class Admission(Protocol):
    """Limits on starting jobs beyond capacity (tenant quotas)."""

    def check(self, job: QueuedJob, pool: PoolState) -> str | None: ...

    def take(self, job: QueuedJob, pool: PoolState) -> str | None: ...


class _Nominator:
    """Network placement for the jobs of one pass, fast for bursts of similar jobs.

    Nothing is placed while jobs are being committed, so what a pool offers a job — feasibility,
    run time, cost, energy, the wait until whole nodes free up — depends only on the job's shape;
    it is evaluated once per shape (`_evaluate`). Per job only the wait behind the work already
    committed to each pool changes (`backlog`), and only for pools that were given jobs since.
    The decision keeps the few best pools (the nomination), not every candidate."""

    KEEP = 3

    def __init__(self, pools: list[_WorkingPool], now: datetime,
                 quotes: Mapping[QuoteKey, Quote] | None = None) -> None:
        self.pools, self.now, self.quotes = pools, now, quotes
        self.by_id = {wp.state.pool_id: wp for wp in pools}
        self.shapes: dict[tuple[object, ...], list[Candidate]] = {}
        self.awaiting: set[tuple[object, ...]] = set()  # shapes a peer has not answered for
        self.cleared: dict[int, tuple[float, float]] = {}  # pool → (backlog, when it has drained)

    def _drained(self, pid: int, queued: float) -> float:
        hit = self.cleared.get(pid)
        if hit is not None and hit[0] == queued:
            return hit[1]
        wp = self.by_id[pid]
        st = wp.state
        view = PoolView(pid, str(st.spec.device_kind), st.spec.total_units, wp.free_units,
                        wp.busy(self.now), queued)
        t = view.backlog_cleared(0.0)
        self.cleared[pid] = (queued, t)
        return t

    def _base(self, job: QueuedJob) -> list[Candidate]:
        key = shape_key(job.req)
        base = self.shapes.get(key)
        if base is None:
            plain = QueuedJob(job.job_id, job.tenant_id, job.submitted_at,
                              replace(job.req, budget_fen=None, deadline=None))
            cands = _evaluate(plain, self.pools, self.now, quotes=self.quotes)
            base = [c for c in cands if c.feasible]
            if any(c.reasons == [AWAITING_QUOTE] for c in cands):
                self.awaiting.add(key)
            self.shapes[key] = base
        return base

    def nominate(self, job: QueuedJob, backlog: Mapping[int, float]) -> Decision:
        req = job.req
        base = self._base(job)
        if shape_key(req) in self.awaiting:
            # A peer's answer is on its way (a pass or two): committing the job elsewhere now
            # would keep it there, however good the peer's answer.
            return Decision(job.job_id, req.policy, [], message=AWAITING_QUOTE)
        now, budget, deadline = self.now, req.budget_fen, req.deadline
        if budget is not None:
            base = [c for c in base if c.cost_exact <= budget]
        decision = Decision(job.job_id, req.policy, [])
        if not base:
            decision.message = "no feasible pool now" + (" within the budget" if budget is not None else "")
            return decision
        cleared = self.cleared
        waits = []
        for c in base:
            w = c.wait_s or 0.0
            queued = backlog.get(c.pool_id, 0.0)
            if queued > 0:
                hit = cleared.get(c.pool_id)
                t = hit[1] if hit is not None and hit[0] == queued else self._drained(c.pool_id, queued)
                if t > w:
                    w = t
            waits.append(w)
        finishes = [w + (c.runtime_s or 0.0) for w, c in zip(waits, base, strict=True)]
        policy = req.policy
        scores = policy_scores(policy, finishes, [c.cost_exact for c in base], [c.energy_exact for c in base],
                               digits=6)
        if deadline is None:
            misses = [False] * len(base)
        else:
            limit = (deadline - now).total_seconds()
            misses = [f > limit for f in finishes]
        pids = [c.pool_id for c in base]
        top = heapq.nsmallest(self.KEEP, zip(misses, scores, finishes, pids, range(len(base)), strict=True))
        for rank, (miss, score, finish, _, i) in enumerate(top):
            c = base[i]
            decision.candidates.append(Candidate(
                c.pool_id, c.pool, c.center_id, True, [], fits_now=c.fits_now and waits[i] == 0.0,
                wait_s=round(waits[i], 3), runtime_s=c.runtime_s, finish_s=round(finish, 3),
                cost_fen=c.cost_fen, energy_wh=c.energy_wh, score=score, chosen=rank == 0,
                cost_exact=c.cost_exact, energy_exact=c.energy_exact, misses_deadline=miss,
                transfer_s=c.transfer_s, beyond_walltime=c.beyond_walltime, quote=c.quote))
        best = decision.candidates[0]
        decision.target_pool_id = best.pool_id
        decision.estimated_start = now + timedelta(seconds=best.wait_s or 0.0)
        n = len(base)
        decision.message = (f"committed to {best.pool} (best by {policy}, of {n} feasible "
                            f"pool{'s' if n != 1 else ''})")
        return decision


def queue_order(job: QueuedJob) -> tuple[int, datetime, int]:
    return (-job.req.priority, job.submitted_at, job.job_id)


def schedule(
    pools: list[PoolState], queue: list[QueuedJob], now: datetime, *,
    targets: Mapping[int, int] | None = None,
    order: Callable[[QueuedJob], tuple[object, ...]] | None = None,
    admit: Admission | None = None,
    queue_mode: str = "easy",
    only_pools: set[int] | None = None,
    quotes: Mapping[QuoteKey, Quote] | None = None,
) -> list[Decision]:
    """One scheduling pass. Returns a decision for every queued job, in queue order.

    1. Network placement: a job not yet committed to a pool (no entry in `targets`, or its pool
       went offline, draining or unfit) is ranked on every pool — its wait there includes the work
       already committed to it — and committed to the best (`Decision.target_pool_id`).
    2. Each pool's queue — the jobs committed to it, in `order` (default: priority, then
       submission) — is planned with EASY backfilling on unit counts (`backfill.plan`; FCFS when
       `backfill` is False); a job the planner starts gets whole nodes (gang jobs all their nodes in
       this pool) or waits. `admit` may hold a job back with a reason (a tenant quota): a job
       `admit.check` refuses stays out of the planner this pass, and `admit.take` counts each
       start (two jobs of one tenant cannot together pass its quota). `only_pools` limits step 2
       to those pools (plus pools that were given jobs in step 1): the others' queues did not
       change.
    `quotes`: the peer platforms' answers for the queue's job shapes on their pools (federation;
    `QuoteKey` = (shape_key(req), pool id)); a peer's pool without one is not a candidate yet.
    None: peers' pools are weighed like any pool (the digital twin, tests).
    """
    working = [_WorkingPool(p) for p in sorted(pools, key=lambda p: p.pool_id)]
    by_id = {wp.state.pool_id: wp for wp in working}
    nominator = _Nominator(working, now, quotes)
    ordered = sorted(queue, key=order or queue_order)
    decisions: list[Decision] = []
    committed: dict[int, list[tuple[QueuedJob, Decision]]] = {}
    backlog: dict[int, float] = {}
    touched: set[int] = set()
    for job in ordered:
        target = targets.get(job.job_id) if targets else None
        wp = by_id.get(target) if target is not None else None
        if wp is not None and not static_reasons(job.req, wp.state) and not _status_reasons(wp.state):
            d = Decision(job.job_id, job.req.policy, [], target_pool_id=wp.state.pool_id,
                         message=f"queued at {wp.state.label}")
        else:
            d = nominator.nominate(job, backlog)
            if d.target_pool_id is None:
                decisions.append(d)
                continue
            wp = by_id[d.target_pool_id]
            touched.add(d.target_pool_id)
        decisions.append(d)
        pid = wp.state.pool_id
        committed.setdefault(pid, []).append((job, d))
        backlog[pid] = backlog.get(pid, 0.0) + job.req.resources.units * job.req.walltime_s
    openings: dict[int, Opening] = {}
    for pid, jobs in committed.items():
        if only_pools is not None and pid not in only_pools and pid not in touched:
            continue
        openings[pid] = _plan_pool(by_id[pid], jobs, now, admit, queue_mode)
    for wp in working:  # a pool with no queue of its own has all its free units to offer
        st = wp.state
        if st.pool_id not in committed and wp.free_units > 0:
            openings[st.pool_id] = Opening(wp.free_units)
    _rebind(ordered, decisions, openings, nominator, by_id, admit)
    return decisions


def _rebind(ordered: list[QueuedJob], decisions: list[Decision], openings: dict[int, Opening],
            nominator: _Nominator, by_id: dict[int, _WorkingPool], admit: Admission | None) -> None:
    """Late binding: a job still waiting at its pool after every pool's queue was planned starts
    now at another pool that has room for it (`network.pick_opening`: the twin's rule too) —
    as EASY would backfill it there, on whole nodes, within its budget and quota. Peers' pools
    are not offered (the peer answers for its own queue)."""
    for pid in [pid for pid in openings if by_id[pid].state.peer]:
        del openings[pid]
    if not openings:
        return
    by_job = {d.job_id: d for d in decisions}
    most = max(o.free for o in openings.values())
    # Per job shape, policy and budget: its feasible pools by id, and ranked by its policy — the
    # ranked list loses the pools without room for it as `pick_opening` meets them (room only
    # shrinks during a pass), so alike jobs look at each full pool once.
    shapes: dict[tuple[object, ...], tuple[dict[int, Option], list[Option]]] = {}
    for job in ordered:
        if most <= 0:
            return
        req = job.req
        d = by_job[job.job_id]
        if (d.placed or d.deferred or d.target_pool_id is None or req.resources.units > most
                or d.message.startswith("held at")):
            continue
        policy = req.policy.value
        rkey = (shape_key(req), policy, req.budget_fen)
        known = shapes.get(rkey)
        if known is None:
            hold = float(req.walltime_s)
            options = [Option(c.pool_id, c.runtime_s or math.inf, c.cost_exact, c.energy_exact, hold_s=hold)
                       for c in nominator._base(job)
                       if req.budget_fen is None or c.cost_exact <= req.budget_fen]
            known = shapes[rkey] = ({o.key: o for o in options}, rank_options(policy, options))
        by_pool, ranked = known
        here_id = d.target_pool_id
        here = by_pool.get(here_id) or Option(here_id, math.inf, math.inf, math.inf)
        units = req.resources.units

        def whole_nodes(pid: int, r: JobRequirements = req) -> bool:
            return by_id[pid].find_nodes(r) is not None

        best = pick_opening(policy, units, here, ranked, openings, 0.0, fits=whole_nodes)
        if best is None:
            continue
        wp = by_id[best.key]
        if admit is not None and (admit.check(job, wp.state) or admit.take(job, wp.state)):
            continue
        nodes = wp.find_nodes(req)
        assert nodes is not None
        openings[best.key].take(req.resources.units, best.holds_s, 0.0)
        if here_id in openings:
            # Its pool's plan changed (its head may have left, with the reservation the room
            # was offered under): that pool offers nothing more until it plans again.
            openings[here_id] = Opening.closed()
        most = max(o.free for o in openings.values())
        was = by_id[here_id].state.label
        d.moved_from, d.target_pool_id, d.pool_id = here_id, best.key, best.key
        d.nodes = tuple(nodes)
        d.devices = wp.take(req, nodes, nominator.now)
        d.estimated_start = nominator.now
        d.position = None
        d.message = f"moved from {was} to {wp.state.label}: it starts now there (best by {req.policy})"


def _plan_pool(wp: _WorkingPool, jobs: list[tuple[QueuedJob, Decision]], now: datetime,
               admit: Admission | None, mode: str) -> Opening:
    """EASY (or FCFS) over one pool's queue; starts get whole nodes or wait. Returns the room the
    pool has left for a job from elsewhere (times in seconds from `now`)."""
    eligible: list[tuple[QueuedJob, Decision]] = []
    for job, d in jobs:
        held = admit.check(job, wp.state) if admit is not None else None
        if held:
            d.message = f"held at {wp.state.label}: {held}"
        else:
            eligible.append((job, d))
    waiting = [Waiting(j.req.resources.units, float(j.req.walltime_s)) for j, _ in eligible]
    if mode == "conservative":
        p = conservative(wp.free_units, wp.busy(now), waiting, 0.0)
    else:
        p = plan(wp.free_units, wp.busy(now), waiting, 0.0, backfill=mode == "easy")
    label = wp.state.label
    started: set[int] = set()
    no_nodes: set[int] = set()
    held_now: set[int] = set()
    for i in p.starts:
        job, d = eligible[i]
        nodes = wp.find_nodes(job.req)
        if nodes is None:
            no_nodes.add(i)
            d.deferred = True
            continue
        held = admit.take(job, wp.state) if admit is not None else None
        if held:
            d.message = f"held at {wp.state.label}: {held}"
            d.deferred = True
            held_now.add(i)
            continue
        started.add(i)
        d.pool_id = wp.state.pool_id
        d.nodes = tuple(nodes)
        d.devices = wp.take(job.req, nodes, now)
        d.estimated_start = now
        how = "backfilled" if p.head is not None and i > p.head else "started"
        d.message = f"{how} on {label} (best by {job.req.policy})"
    position = 0
    for i, (_job, d) in enumerate(eligible):
        if i in started or i in held_now:
            continue
        position += 1
        d.position = position
        if i in no_nodes:
            d.message = f"waiting at {label} (#{position}): units are free, but not on whole nodes it can use"
        elif i == p.head and p.shadow_time is not None and math.isfinite(p.shadow_time):
            d.estimated_start = now + timedelta(seconds=max(0.0, p.shadow_time))
            d.message = (f"waiting at {label} (#{position}, first in line): units reserved from "
                         f"{d.estimated_start:%Y-%m-%d %H:%M}Z")
        else:
            d.message = f"waiting at {label} (#{position})"
    # The units the planner gave to jobs that could not start (no whole nodes, a quota) are
    # still theirs: they wait first in line.
    kept = sum(eligible[i][0].req.resources.units for i in no_nodes | held_now)
    if p.head is None and not kept:
        return Opening(wp.free_units)
    if mode != "easy":
        return Opening.closed()
    shadow_time = math.inf if p.head is None or p.shadow_time is None else p.shadow_time
    return Opening(max(0, wp.free_units - kept), shadow_time, p.extra_left)


def explain_job(
    req: JobRequirements, pools: list[PoolState], now: datetime, *, job_id: int = 0,
    backlog: Mapping[int, float] | None = None,
    quotes: Mapping[QuoteKey, Quote] | None = None,
) -> Decision:
    """Evaluate one job against the pools as they are, without placing anything. `backlog`: the
    unit-seconds of walltime already queued at each pool (the job would queue behind it);
    `quotes`: the peers' answers for it (see `schedule`)."""
    working = [_WorkingPool(p) for p in sorted(pools, key=lambda p: p.pool_id)]
    job = QueuedJob(job_id, 0, now, req)
    cands = _evaluate(job, working, now, backlog, quotes)
    decision = Decision(job_id, req.policy, cands)
    feasible = [c for c in cands if c.feasible]
    if feasible:
        best = min(feasible, key=_rank_key)
        best.chosen = True
        decision.estimated_start = now + timedelta(seconds=best.wait_s or 0.0)
        decision.message = f"best pool now: {best.pool}"
    else:
        decision.message = "no feasible pool now"
    return decision
