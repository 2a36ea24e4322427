"""One scheduling pass of the engine's scheduler, at 1k, 10k and 100k queued jobs and 200 pools.

Pure: `scheduling.placement.schedule` on synthetic pools (200 pools of 3 device kinds, 2–64 nodes
each, half of them busy) and a synthetic queue (mixed kinds, 1–32 units, gang jobs, priorities,
10 tenants). Two passes per size:

* steady state — every job is already committed to a pool (the engine's usual full pass: each
  pool's queue is ordered and planned with EASY);
* nomination — every job is new (network placement ranks every feasible pool for each job, then
  the pools are planned): the cost of a burst of submissions.

Target (issue 5): a pass over 10,000 queued jobs and 200 pools in ≤ 1 s, cost growing at most
linearly in jobs × candidate pools. Prints a table; writes bench/results/scheduler-latest.json.

    python bench/scheduler.py [--sizes 1000,10000,100000] [--pools 200]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suanli.domain.enums import CenterStatus, DeviceKind, Policy, Precision  # noqa: E402
from suanli.domain.model import JobRequirements, PoolSpec, Resources  # noqa: E402
from suanli.scheduling import PoolState, QueuedJob, RunningAllocation, schedule  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NOW = datetime(2026, 11, 23, tzinfo=UTC)
KINDS = [DeviceKind.CPU, DeviceKind.GPU, DeviceKind.NPU]


def make_pools(n: int, rng: random.Random) -> list[PoolState]:
    pools = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        upn = 64 if kind is DeviceKind.CPU else 8
        nodes = rng.randint(2, 64)
        spec = PoolSpec(device_kind=kind, device_model=f"m{i % 5}", domestic=i % 2 == 0,
                        units_per_node=upn, nodes=nodes, memory_gb_per_node=512,
                        price_fen_per_unit_hour=rng.randint(3, 1500), tflops_fp64=1.0,
                        tflops_fp32=rng.uniform(1, 100), tflops_fp16=rng.uniform(50, 400),
                        tflops_int8=400.0, watts_per_unit=rng.randint(3, 400), max_walltime_s=7 * 86400)
        free: list[frozenset[int]] = []
        running: list[RunningAllocation] = []
        for node in range(nodes):
            devices = range(node * upn, (node + 1) * upn)
            if rng.random() < 0.5:  # half the nodes are busy until some time in the next day
                free.append(frozenset())
                running.append(RunningAllocation(upn, NOW + timedelta(seconds=rng.randint(60, 86400)),
                                                 tuple(devices)))
            else:
                free.append(frozenset(devices))
        pools.append(PoolState(i + 1, i + 1, f"c{i + 1}", "p", spec, 1.3, "", CenterStatus.ONLINE,
                               tuple(free), tuple(512 for _ in range(nodes)), tuple(running)))
    return pools


def make_queue(n: int, rng: random.Random) -> list[QueuedJob]:
    out = []
    for i in range(n):
        kind = rng.choice(KINDS)
        units = rng.choice([1, 1, 2, 4, 8, 8, 16, 32])
        nodes = 2 if units >= 16 and rng.random() < 0.5 else 1
        wall = rng.choice([600, 3600, 4 * 3600, 86400])
        req = JobRequirements(Resources(kind, units, nodes), walltime_s=wall,
                              precision=Precision.FP16 if kind is not DeviceKind.CPU else Precision.FP32,
                              policy=rng.choice(list(Policy)), priority=rng.choice([0, 0, 0, 10]))
        out.append(QueuedJob(i + 1, rng.randint(1, 10), NOW - timedelta(seconds=n - i), req))
    return out


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pools = make_pools(args.pools, rng)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        queue = make_queue(n, random.Random(args.seed + n))
        t_nom, decisions = timed(lambda q=queue: schedule(pools, q, NOW))
        targets = {d.job_id: d.target_pool_id for d in decisions if d.target_pool_id is not None}
        # the jobs that were started leave the queue: the next pass sees the rest, all committed
        waiting = [q for q, d in zip(queue, decisions, strict=True) if not d.placed]
        t_steady, again = timed(lambda w=waiting, t=targets: schedule(pools, w, NOW, targets=t))
        candidates = len(pools) / len(KINDS)  # every pool of the job's device kind is feasible
        rows.append({"queued": n, "pools": len(pools), "nomination_s": round(t_nom, 3),
                     "steady_s": round(t_steady, 3), "placed_in_nomination": sum(d.placed for d in decisions),
                     "steady_queue": len(waiting), "candidate_pools_per_job": round(candidates),
                     "us_per_job_pool_nomination": round(t_nom / (n * candidates) * 1e6, 2),
                     "us_per_job_steady": round(t_steady / max(1, len(waiting)) * 1e6, 2),
                     "started_in_steady": sum(d.placed for d in again)})
    table = Table(title=f"one scheduling pass, {len(pools)} pools (2 cores)")
    for col in ("queued jobs", "steady-state pass", "µs per queued job", "nomination pass (all new)",
                "µs per job × candidate pool", "started"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['queued']:,}", f"{r['steady_s']:.3f} s", f"{r['us_per_job_steady']:.1f}",
                      f"{r['nomination_s']:.3f} s", f"{r['us_per_job_pool_nomination']:.2f}",
                      f"{r['placed_in_nomination']:,}")
    Console(width=150).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scheduler-latest.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
