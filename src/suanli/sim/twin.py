"""The city as a digital twin: a scenario's workloads placed on its pools by a network policy.

Each arriving job is committed to one pool by the policy (the real `scheduling.network` placement
for `suanli`), then waits in that pool's queue, ordered by the real queue planner (EASY or FCFS).
Policies, all through one interface (`Policy.choose(job, now) -> pool index`):

* isolated — each job runs at its home center: today's world without a network;
* random, round-robin — over the pools that can run the job;
* least-loaded — the pool with the least (busy + queued units) / units;
* suanli — the network placement: earliest estimated finish (or the job's own policy: cheapest,
  greenest, balanced), from each pool's running jobs and queued work;
* merged — all pools that share the jobs' device kinds as one ideal cluster (their units, at
  their unit-weighted mean speed): the limit a placement is measured against (a true upper bound
  when every pool runs at one speed).
"""

from __future__ import annotations

import functools
import random
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..scheduling.backfill import Busy
from ..scheduling.network import JobAsk, Opening, Option, PoolView, choose, pick_opening, rank_options
from .kernel import ARRIVE, FINISH, Kernel, gc_paused
from .metrics import JobRecord, jain, summarize
from .pool import SimPool
from .scenario import PoolSpec, Scenario, ScenarioError, SimJob

if TYPE_CHECKING:
    from .report import BackgroundPlots

TENANT_KEYS = ("jobs", "mean_wait_s", "median_wait_s", "p95_wait_s", "mean_bsld")
POLICY_NAMES = ("isolated", "random", "round-robin", "least-loaded", "suanli", "merged")


class Policy:
    name = ""
    rebind = False  # jobs queued at one pool may move to another that can start them now

    def __init__(self, pools: Sequence[SimPool], specs: Sequence[PoolSpec], seed: int) -> None:
        self.pools, self.specs = pools, specs
        self._feasible: dict[tuple[frozenset[str], int], list[int]] = {}

    def feasible(self, job: SimJob) -> list[int]:
        key = (job.devices, job.units)
        found = self._feasible.get(key)
        if found is None:
            found = [i for i, s in enumerate(self.specs) if s.device in job.devices and job.units <= s.units]
            self._feasible[key] = found
        return found

    def choose(self, job: SimJob, now: float) -> int:
        raise NotImplementedError


class Isolated(Policy):
    name = "isolated"

    def choose(self, job: SimJob, now: float) -> int:
        return job.home


class Random(Policy):
    name = "random"

    def __init__(self, pools: Sequence[SimPool], specs: Sequence[PoolSpec], seed: int) -> None:
        super().__init__(pools, specs, seed)
        self.rng = random.Random(seed)

    def choose(self, job: SimJob, now: float) -> int:
        return self.rng.choice(self.feasible(job))


class RoundRobin(Policy):
    name = "round-robin"

    def __init__(self, pools: Sequence[SimPool], specs: Sequence[PoolSpec], seed: int) -> None:
        super().__init__(pools, specs, seed)
        self.next: dict[frozenset[str], int] = {}

    def choose(self, job: SimJob, now: float) -> int:
        options = self.feasible(job)
        k = self.next.get(job.devices, 0)
        self.next[job.devices] = k + 1
        return options[k % len(options)]


class LeastLoaded(Policy):
    name = "least-loaded"

    def choose(self, job: SimJob, now: float) -> int:
        pools = self.pools
        return min(self.feasible(job),
                   key=lambda i: ((pools[i].capacity - pools[i].free + pools[i].queued_units)
                                  / pools[i].capacity, i))


class Suanli(Policy):
    name = "suanli"
    rebind = True

    def __init__(self, pools: Sequence[SimPool], specs: Sequence[PoolSpec], seed: int) -> None:
        super().__init__(pools, specs, seed)
        self.views = [PoolView(key=i, device=s.device, capacity=s.units, free=s.units, speed=s.speed,
                               price_fen_per_unit_hour=s.price_fen_per_unit_hour,
                               watts_per_unit=s.watts_per_unit, pue=s.pue, site=s.center)
                      for i, s in enumerate(specs)]

    def choose(self, job: SimJob, now: float) -> int:
        views = []
        for i in self.feasible(job):
            v, p = self.views[i], self.pools[i]
            v.free, v.running, v.queued_unit_s = p.free, p.running, p.queued_unit_s
            v.reservation = p.reservation
            views.append(v)
        best = choose(JobAsk(job.units, job.estimate, job.devices, job.policy), views, now)
        return job.home if best is None else best.key


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (Isolated, Random, RoundRobin, LeastLoaded, Suanli)}


@dataclass(slots=True)
class TwinRun:
    policy: str
    scenario: Scenario
    records: list[JobRecord]
    capacity: dict[str, int]  # pool label → units (merged: the merged clusters)
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        total = sum(self.capacity.values())
        out: dict[str, Any] = {"policy": self.policy, **summarize(self.records, total,
                                                                   skipped=self.scenario.skipped)}
        out["cost_fen"] = sum(r.cost_fen for r in self.records)
        out["energy_kwh"] = round(sum(r.energy_wh for r in self.records) / 1000, 3)
        tenants = self.by_tenant()
        out["jain_fairness"] = round(jain(1 / t["mean_bsld"] for t in tenants.values() if t["mean_bsld"]), 4)
        out.update(self.dag_summary())
        return out

    def dag_summary(self) -> dict[str, Any]:
        """DAG instances: how many, and the mean time from submission to the last stage's end."""
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for r, j in zip(self.records, self.scenario.jobs, strict=True):
            if j.dag:
                first[j.dag] = min(first.get(j.dag, j.submit), j.submit)
                last[j.dag] = max(last.get(j.dag, 0.0), r.end)
        if not first:
            return {}
        spans = [last[d] - first[d] for d in first]
        return {"dags": len(spans), "mean_dag_makespan_s": round(sum(spans) / len(spans), 3)}

    def by_pool(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[JobRecord]] = {label: [] for label in self.capacity}
        for r in self.records:
            groups.setdefault(r.center, []).append(r)
        return {label: summarize(recs, self.capacity.get(label, 0)) for label, recs in groups.items()}

    def by_tenant(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[JobRecord]] = {}
        for r in self.records:
            groups.setdefault(r.tenant, []).append(r)
        out = {}
        for tenant in sorted(groups):
            s = summarize(groups[tenant], 0)
            out[tenant] = {k: s[k] for k in TENANT_KEYS}
            out[tenant]["cost_fen"] = sum(r.cost_fen for r in groups[tenant])
        return out


def _merged_pools(sc: Scenario) -> tuple[list[PoolSpec], dict[frozenset[str], int]]:
    """One pool per distinct device set of the jobs, with every matching pool's units at their
    unit-weighted mean speed."""
    sets = sorted({j.devices for j in sc.jobs}, key=lambda s: sorted(s))
    for a in sets:
        for b in sets:
            if a != b and a & b:
                raise ScenarioError(f"merged: workloads share some device kinds but not all ({sorted(a)} and "
                                    f"{sorted(b)}); give them the same 'devices'")
    specs: list[PoolSpec] = []
    index: dict[frozenset[str], int] = {}
    for s in sets:
        members = [p for p in sc.pools if p.device in s]
        units = sum(p.units for p in members)
        speed = sum(p.speed * p.units for p in members) / units
        price = sum(p.price_fen_per_unit_hour * p.units for p in members) / units
        watts = sum(p.watts_per_unit * p.units for p in members) / units
        pue = sum(p.pue * p.units for p in members) / units
        index[s] = len(specs)
        kinds = "+".join(sorted(s))
        specs.append(PoolSpec("merged", kinds, kinds, units, round(speed, 6), price, watts, pue))
    return specs, index


def run_twin(sc: Scenario, policy: str, *, progress: Callable[[int], None] | None = None) -> TwinRun:
    """Simulate the scenario under one placement policy."""
    if policy not in POLICY_NAMES:
        raise ScenarioError(f"unknown policy {policy!r} (one of {', '.join(POLICY_NAMES)})")
    merged = policy == "merged"
    if merged:
        specs, merged_index = _merged_pools(sc)
    else:
        specs = list(sc.pools)
    pools = [SimPool(s.label, s.units, sc.scheduler) for s in specs]
    chooser: Policy | None = None if merged else POLICIES[policy](pools, specs, sc.seed)
    jobs = sc.jobs
    n = len(jobs)
    kernel = Kernel(0.0)
    start = [0.0] * n
    end = [0.0] * n
    ready = [j.submit for j in jobs]  # when a job may queue: its submission, or its parents' end
    where = [0] * n
    dirty: set[int] = set()
    done = [0]
    # DAG stages: a stage queues when its last parent ends
    index = {j.id: k for k, j in enumerate(jobs)}
    children: dict[int, list[int]] = {}
    waiting_on = [len(j.parents) for j in jobs]
    for k, j in enumerate(jobs):
        for parent in j.parents:
            children.setdefault(index[parent], []).append(k)
    stream = [k for k, j in enumerate(jobs) if not j.parents]  # arrivals from outside, by time

    rebind = chooser is not None and chooser.rebind
    waiting: dict[frozenset[str], list[int]] = {}  # per device set: queued jobs, in arrival order
    moved = [0]
    arrived = [False]

    def start_ready(i: int, now: float) -> None:
        speed = specs[i].speed
        for k, hold in pools[i].schedule(now):
            start[k] = now
            e = now + jobs[k].runtime / speed
            end[k] = e
            kernel.at(e, FINISH, finish, i, hold, k)
            if rebind:
                w = waiting[jobs[k].devices]
                del w[bisect_left(w, k)]

    def schedule() -> None:
        now = kernel.now
        while dirty:
            todo = sorted(dirty)
            dirty.clear()
            for i in todo:
                start_ready(i, now)
            if rebind:
                # After arrivals every pool with free units looks (an idle pool is not dirty).
                rebalance(range(len(pools)) if arrived[0] else todo, now)
                arrived[0] = False

    def option(i: int, j: SimJob) -> Option:
        spec = specs[i]
        run = j.estimate / spec.speed
        return Option(i, run, j.units * spec.price_fen_per_unit_hour * run,
                      j.units * spec.watts_per_unit * run * spec.pue)

    def rebalance(lookers: Iterable[int], now: float) -> None:
        """Late binding (`network.pick_opening`, as the engine): pools with units left after their
        own queue take jobs waiting elsewhere that they can start now."""
        openings: dict[int, Opening] = {}
        for i in lookers:
            pool = pools[i]
            if pool.free <= 0:
                continue
            if not pool.queue:
                openings[i] = Opening(pool.free)
            elif pool.easy and (res := pool.reservation) is not None:
                openings[i] = Opening(pool.free, res[0], res[1])
        if not openings:
            return
        devices_open = {specs[i].device for i in openings}
        for devices, w in waiting.items():
            if not devices & devices_open:
                continue
            for k in list(w):
                most = max((o.free for o in openings.values()), default=0)
                if most <= 0:
                    return
                j = jobs[k]
                if j.units > most:
                    continue
                c = where[k]
                # ranked over every pool it could run on, as the engine ranks them
                choices = rank_options(j.policy, [option(i, j) for i in chooser.feasible(j)])  # type: ignore[union-attr]
                best = pick_opening(j.policy, j.units, option(c, j), choices, openings, now)
                if best is None:
                    continue
                i = best.key
                openings[i].take(j.units, best.holds_s, now)
                pools[c].remove(k)
                dirty.add(c)
                openings.pop(c, None)  # its plan changed: it offers room again once re-planned
                where[k] = i
                moved[0] += 1
                pools[i].enqueue(k, j.units, best.run_s)
                start_ready(i, now)
                if not openings[i].free:
                    del openings[i]

    def queue(k: int, now: float) -> None:
        j = jobs[k]
        i = merged_index[j.devices] if merged else chooser.choose(j, now)  # type: ignore[union-attr]
        where[k] = i
        pools[i].enqueue(k, j.units, j.estimate / specs[i].speed)
        dirty.add(i)
        if rebind:
            insort(waiting.setdefault(j.devices, []), k)
            arrived[0] = True

    def arrive(s: int) -> None:
        t = jobs[stream[s]].submit
        while s < len(stream) and jobs[stream[s]].submit == t:
            queue(stream[s], t)
            s += 1
        if s < len(stream):
            kernel.at(jobs[stream[s]].submit, ARRIVE, arrive, s)
        kernel.at_end_of_instant(schedule)

    def finish(i: int, hold: Busy, k: int) -> None:
        pools[i].release(hold)
        done[0] += 1
        if progress is not None and done[0] % 1000 == 0:
            progress(done[0])
        if pools[i].queue:
            dirty.add(i)
            kernel.at_end_of_instant(schedule)
        for c in children.get(k, ()):
            waiting_on[c] -= 1
            if waiting_on[c] == 0:
                ready[c] = kernel.now
                queue(c, kernel.now)
                kernel.at_end_of_instant(schedule)

    if stream:
        kernel.at(jobs[stream[0]].submit, ARRIVE, arrive, 0)
    with gc_paused():
        kernel.run()
    if progress is not None:
        progress(n)
    records = []
    for k, j in enumerate(jobs):
        s = specs[where[k]]
        hours = (end[k] - start[k]) / 3600
        records.append(JobRecord(j.id, ready[k], start[k], end[k], j.units, j.tenant, s.label,
                                 round(j.units * s.price_fen_per_unit_hour * hours),
                                 round(j.units * s.watts_per_unit * hours * s.pue, 3)))
    return TwinRun(policy, sc, records, {s.label: s.units for s in specs}, kernel.events,
                   {"moved": moved[0]} if rebind else {})


def compare(sc: Scenario, policies: Sequence[str], *,
            progress: Callable[[str, int], None] | None = None) -> list[TwinRun]:
    """Run the scenario once per policy (same jobs, same seed)."""
    for p in policies:
        if p not in POLICY_NAMES:
            raise ScenarioError(f"unknown policy {p!r} (one of {', '.join(POLICY_NAMES)})")
    runs = []
    for p in policies:
        step: Callable[[int], None] | None = None
        if progress is not None:
            step = functools.partial(progress, p)
        runs.append(run_twin(sc, p, progress=step))
    return runs


def write_runs(out: Path, runs: Sequence[TwinRun], *, plots: bool = True,
               plotter: BackgroundPlots | None = None) -> dict[str, Any]:
    """`out/summary.json` (per policy: overall, per pool, per tenant), `out/jobs-<policy>.csv`,
    and with `plots` utilization.png and wait_cdf.png (one line per policy) — drawn by `plotter`
    in the background when given (the caller waits for it), else here."""
    from .report import plot_runs, write_jobs_csv, write_summary

    out.mkdir(parents=True, exist_ok=True)
    sc = runs[0].scenario
    if plots:  # first: a background plotter draws while the files below are written
        plot_runs(out, {r.policy: (r.records, sum(r.capacity.values())) for r in runs},
                  f"{sc.name}: utilization of all pools", f"{sc.name}: waits", plotter)
    doc: dict[str, Any] = {
        "scenario": sc.name, "source": sc.source, "seed": sc.seed, "scheduler": sc.scheduler,
        "window_days": sc.window_days, "jobs": len(sc.jobs), "skipped": sc.skipped,
        "pools": {p.label: {"device": p.device, "units": p.units, "speed": p.speed} for p in sc.pools},
        "policies": {r.policy: {"overall": r.summary(), "pools": r.by_pool(), "tenants": r.by_tenant()}
                     for r in runs},
    }
    write_summary(out / "summary.json", doc)
    for r in runs:
        write_jobs_csv(out / f"jobs-{r.policy}.csv", r.records, extra=True)
    return doc
