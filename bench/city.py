"""The demo city as a digital twin: what a network buys over isolated centers.

Runs data/scenarios/demo-city.toml (ten pools of six demo centers, each fed by its own window of
a real trace, time-aligned and scaled to the pool) under isolated, random, round-robin,
least-loaded, suanli and merged placement, and reports mean bounded slowdown, waits, utilization
and fairness. Targets (issue 5): suanli's mean bounded slowdown at least 50 % lower than isolated,
and within 15 % of merged (all pools as one ideal cluster).

    python bench/city.py [--scenario FILE]

Prints a table, writes bench/results/city-latest.json, and the README's plots
docs/img/city-bsld.png and docs/img/city-wait-cdf.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suanli.sim.report import _pyplot, plot_wait_cdf  # noqa: E402
from suanli.sim.scenario import load_scenario  # noqa: E402
from suanli.sim.twin import compare  # noqa: E402

RESULTS = ROOT / "bench" / "results"
IMG = ROOT / "docs" / "img"
POLICIES = ["isolated", "random", "round-robin", "least-loaded", "suanli", "merged"]


def bar_plot(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=100)
    names = [r["policy"] for r in rows]
    values = [r["mean_bsld"] for r in rows]
    colors = ["#888888" if n != "suanli" else "#c0392b" for n in names]
    bars = ax.bar(names, values, color=colors)
    ax.set_yscale("log")
    ax.set_ylabel("mean bounded slowdown (log)")
    ax.set_title(title)
    for b, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", type=Path, default=ROOT / "data" / "scenarios" / "demo-city.toml")
    args = ap.parse_args()
    console = Console(width=150)
    t0 = time.perf_counter()
    sc = load_scenario(args.scenario)
    runs = compare(sc, POLICIES)
    elapsed = time.perf_counter() - t0
    rows = [r.summary() for r in runs]
    by = {r["policy"]: r for r in rows}
    iso, net, merged = by["isolated"]["mean_bsld"], by["suanli"]["mean_bsld"], by["merged"]["mean_bsld"]
    lower_than_isolated = 1 - net / iso
    over_merged = net / merged - 1
    table = Table(title=f"{sc.name}: {len(sc.jobs):,} jobs over {sc.window_days:g} days, "
                        f"{len(sc.pools)} pools")
    for col in ("policy", "mean bsld", "vs isolated", "mean wait s", "p95 wait s", "utilization",
                "Jain (tenants)", "cost (yuan)", "energy (MWh)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["policy"], f"{r['mean_bsld']:.2f}", f"{r['mean_bsld'] / iso:.2f}×",
                      f"{r['mean_wait_s']:,.0f}", f"{r['p95_wait_s']:,.0f}", f"{r['utilization']:.3f}",
                      f"{r['jain_fairness']:.3f}", f"{r['cost_fen'] / 100:,.0f}",
                      f"{r['energy_kwh'] / 1000:,.1f}")
    console.print(table)
    ok1, ok2 = lower_than_isolated >= 0.5, over_merged <= 0.15
    console.print(f"suanli vs isolated: {lower_than_isolated:.1%} lower mean bounded slowdown "
                  f"(target ≥ 50 %: {'met' if ok1 else 'NOT met'}); vs merged: {over_merged:+.1%} "
                  f"(target ≤ +15 %: {'met' if ok2 else 'NOT met'}); {elapsed:.1f} s", highlight=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    source = args.scenario.resolve()
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    doc = {"scenario": sc.name, "source": str(shown),
           "jobs": len(sc.jobs), "seed": sc.seed, "rows": rows,
           "suanli_bsld_lower_than_isolated": round(lower_than_isolated, 4),
           "suanli_bsld_over_merged": round(over_merged, 4), "seconds": round(elapsed, 2)}
    (RESULTS / "city-latest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    IMG.mkdir(parents=True, exist_ok=True)
    bar_plot(IMG / "city-bsld.png", rows, "Demo city twin: mean bounded slowdown by placement policy")
    plot_wait_cdf(IMG / "city-wait-cdf.png", {r.policy: r.records for r in runs}, "Demo city twin: waits")
    console.print(f"→ {RESULTS / 'city-latest.json'}, {IMG / 'city-bsld.png'}, {IMG / 'city-wait-cdf.png'}")


if __name__ == "__main__":
    main()
