"""Placement on cities nobody tuned it on: every policy over N random cities.

Each city comes from a seed (`suanli.sim.cities.make_city`: 3–12 pools of 32–16,384 units, speeds
0.5–2×, CPU and accelerator pools, demand from random windows of the bundled traces and synthetic
workloads, loads from light to saturated). Two disjoint seed sets: `tuning` (seeds 1…N, the ones
placement was tuned on) and `holdout` (seeds 100001…100000+N, never looked at while tuning: the
figures that count). Goal (issue 19), on the holdout set: suanli's mean bounded slowdown median
≤ 10 % and p90 ≤ 20 % above merged, never worse than least-loaded; mean wait median within 10 %
of merged.

    python bench/cities.py [--cities 30] [--sets tuning,holdout] [--workers 2]
    python bench/cities.py --dump SEED > city.toml     # one city as a scenario file

Prints one table per set (median, p90, worst of each ratio) and writes
bench/results/cities-latest.json (every city's figures).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suanli.sim.cities import TRACES, make_city, to_toml  # noqa: E402
from suanli.sim.metrics import percentile  # noqa: E402
from suanli.sim.scenario import build  # noqa: E402
from suanli.sim.twin import compare  # noqa: E402

RESULTS = ROOT / "bench" / "results"
POLICIES = ["isolated", "least-loaded", "suanli", "merged"]
SETS = {"tuning": 1, "holdout": 100_001}
KEYS = ("mean_bsld", "mean_wait_s", "p95_wait_s", "utilization")


def run_city(seed: int, policies: list[str] = POLICIES) -> dict[str, Any]:
    t0 = time.perf_counter()
    city = make_city(seed)
    sc = build(city, base=TRACES, source=f"city {seed}")
    summaries = {r.policy: r.summary() for r in compare(sc, policies)}
    out: dict[str, Any] = {
        "seed": seed, "pools": len(sc.pools), "jobs": len(sc.jobs), "skipped": sc.skipped,
        "days": sc.window_days,
        "units": sum(p.units for p in sc.pools),
        "policies": {policy: {k: summary[k] for k in KEYS} for policy, summary in summaries.items()},
    }
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def ratio(city: dict[str, Any], policy: str, ref: str, key: str) -> float:
    a, b = city["policies"][policy][key], city["policies"][ref][key]
    if b <= 0:
        return 1.0 if a <= 0 else float("inf")
    return a / b


def distribution(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"median": round(statistics.median(s), 4), "p90": round(percentile(s, 90), 4),
            "worst": round(s[-1], 4)}


def summarize(cities: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wait_floor = 60.0  # a mean wait under a minute on both sides is a tie, not a ratio
    for policy in ("suanli", "least-loaded"):
        out[policy] = {
            "bsld_vs_merged": distribution([ratio(c, policy, "merged", "mean_bsld") for c in cities]),
            "wait_vs_merged": distribution([
                max(c["policies"][policy]["mean_wait_s"], wait_floor)
                / max(c["policies"]["merged"]["mean_wait_s"], wait_floor) for c in cities]),
            "bsld_vs_isolated": distribution([ratio(c, policy, "isolated", "mean_bsld") for c in cities]),
        }
    worse = [c["seed"] for c in cities
             if c["policies"]["suanli"]["mean_bsld"] > c["policies"]["least-loaded"]["mean_bsld"] * 1.0001]
    out["suanli_worse_than_least_loaded"] = worse
    s = out["suanli"]
    out["goal"] = {
        "bsld_median_le_1.10": s["bsld_vs_merged"]["median"] <= 1.10,
        "bsld_p90_le_1.20": s["bsld_vs_merged"]["p90"] <= 1.20,
        "never_worse_than_least_loaded": not worse,
        "wait_median_le_1.10": s["wait_vs_merged"]["median"] <= 1.10,
    }
    return out


def table(name: str, cities: list[dict[str, Any]], summary: dict[str, Any]) -> Table:
    t = Table(title=f"{name}: {len(cities)} cities, {sum(c['jobs'] for c in cities):,} jobs")
    for col in ("ratio", "policy", "median", "p90", "worst"):
        t.add_column(col, justify="right" if col in ("median", "p90", "worst") else "left")
    for key, label in (("bsld_vs_merged", "mean BSLD / merged"), ("wait_vs_merged", "mean wait / merged"),
                       ("bsld_vs_isolated", "mean BSLD / isolated")):
        for policy in ("suanli", "least-loaded"):
            d = summary[policy][key]
            t.add_row(label, policy, f"{d['median']:.3f}", f"{d['p90']:.3f}", f"{d['worst']:.3f}")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cities", type=int, default=30, help="cities per set (default 30)")
    ap.add_argument("--sets", default="tuning,holdout", help="tuning, holdout or both (default)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dump", type=int, metavar="SEED", help="print one city as a scenario file and stop")
    ap.add_argument("--seeds", help="only these seeds (comma-separated), for a closer look")
    args = ap.parse_args()
    if args.dump is not None:
        sys.stdout.write(to_toml(make_city(args.dump)))
        return
    console = Console(width=100)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in sets:
        if s not in SETS:
            ap.error(f"unknown set {s!r} (tuning, holdout)")
    doc: dict[str, Any] = {"policies": POLICIES, "cities_per_set": args.cities, "sets": {}}
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(max(1, args.workers)) as workers:
        for name in sets:
            if args.seeds:
                seeds = [int(x) for x in args.seeds.split(",")]
            else:
                seeds = list(range(SETS[name], SETS[name] + args.cities))
            cities = workers.map(run_city, seeds, chunksize=1)
            summary = summarize(cities)
            console.print(table(name, cities, summary))
            goal = summary["goal"]
            console.print("goal: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in goal.items())
                          + (f" (worse than least-loaded: seeds {summary['suanli_worse_than_least_loaded']})"
                             if summary["suanli_worse_than_least_loaded"] else ""), highlight=False)
            doc["sets"][name] = {"seeds": seeds, "summary": summary, "cities": cities}
            if args.seeds:
                break
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    console.print(f"{doc['seconds']:.0f} s")
    if not args.seeds:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "cities-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"→ {RESULTS / 'cities-latest.json'}")


if __name__ == "__main__":
    main()
