"""Digital-twin speed: suanli's simulator against AccaSim 1.1.3 on the same trace, in the same run.

1. In-process, for FCFS and for EASY, on the largest trace in data/traces/ (HPC2N, 202,871 jobs)
   unless told otherwise: suanli's time to read the trace and simulate it (best of --repeat
   runs), and AccaSim's time for `start_simulation` (which reads the same jobs, written back as a
   plain SWF, and simulates them; one run — it takes minutes). Ratio = AccaSim seconds / suanli
   seconds. It also reports both simulators' mean wait and mean bounded slowdown and, for FCFS,
   how many jobs start at a different time (AccaSim's FCFS and ours agree job by job; their EASY
   variants differ — see README).
2. The whole command (issue 19): `suanli simulate trace FILE --scheduler easy --out DIR` as a user
   runs it — start-up, reading the gzipped trace, simulating, writing jobs.csv, summary.json and
   (by default) the two plots — best of --repeat, with and without `--no-plots`, on three traces:
   the first --cut jobs of the largest trace (default 77,000), the largest trace whole, and KTH.
   Targets: the default run within 1.3× of `--no-plots`, and ≥ 50× faster than AccaSim's EASY on
   the same trace.

    python bench/sim.py [--trace FILE] [--repeat 3] [--no-accasim] [--jobs N] [--cut 77000]

Prints two tables and writes bench/results/sim-latest.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suanli.sim.metrics import JobRecord, summarize  # noqa: E402
from suanli.sim.single import run_trace  # noqa: E402
from suanli.sim.workload import Workload, clear_cache, load  # noqa: E402
from tests.sim.accasim_harness import run_accasim  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TRACES = ROOT / "data" / "traces"


def _largest_trace() -> Path:
    return max(TRACES.glob("*.swf*"), key=lambda p: p.stat().st_size)


def ours(path: Path, scheduler: str, repeat: int, jobs: int | None) -> tuple[float, dict[str, Any], Workload]:
    best = float("inf")
    summary: dict[str, Any] = {}
    for _ in range(max(1, repeat)):
        clear_cache()  # time a cold read of the trace, as AccaSim's run includes its read
        t0 = time.perf_counter()
        w = load(path)
        if jobs:
            w.jobs = w.jobs[:jobs]
        run = run_trace(w, scheduler=scheduler)
        best = min(best, time.perf_counter() - t0)
        summary = dict(run.summary())
        summary["starts"] = {r.id: r.start for r in run.records}
    return best, summary, w


SUANLI = str(Path(sys.executable).with_name("suanli"))


def cli_seconds(path: Path, repeat: int, plots: bool) -> float:
    """Best wall time of the whole `suanli simulate trace` command (a fresh process each)."""
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(1, repeat)):
            cmd = [SUANLI, "simulate", "trace", str(path), "--scheduler", "easy", "--out", f"{tmp}/o{i}"]
            t0 = time.perf_counter()
            subprocess.run([*cmd, *([] if plots else ["--no-plots"])], check=True, capture_output=True,
                           env={**os.environ, "COLUMNS": "100"})
            best = min(best, time.perf_counter() - t0)
    return best


def cut_trace(path: Path, jobs: int, out: Path) -> Path:
    """The first `jobs` jobs of an SWF trace (with its header), gzipped."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines() if path.suffix == ".gz" \
        else path.read_text().splitlines()
    head = [ln for ln in lines if ln.startswith(";")]
    body = [ln for ln in lines if ln.strip() and not ln.startswith(";")][:jobs]
    target = out / f"{path.name.split('.swf')[0]}-first{jobs // 1000}k.swf.gz"
    target.write_bytes(gzip.compress(("\n".join(head + body) + "\n").encode(), compresslevel=6))
    return target


def whole_command(traces: list[Path], repeat: int, accasim: bool,
                  known: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for path in traces:
        w = load(path)
        row: dict[str, Any] = {"trace": path.name, "jobs": len(w.jobs),
                               "cli_s": round(cli_seconds(path, repeat, True), 3),
                               "cli_no_plots_s": round(cli_seconds(path, repeat, False), 3)}
        row["plots_ratio"] = round(row["cli_s"] / row["cli_no_plots_s"], 3)
        acc = known.get(path.name)
        if acc is None and accasim:
            with tempfile.TemporaryDirectory() as tmp:
                _, acc = run_accasim(w, w.max_procs or max(j.procs for j in w.jobs), "easy", Path(tmp))
        if acc is not None:
            row["accasim_easy_s"] = round(acc, 2)
            row["accasim_over_cli"] = round(acc / row["cli_s"], 1)
            row["accasim_over_cli_no_plots"] = round(acc / row["cli_no_plots_s"], 1)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="only the first N jobs")
    ap.add_argument("--no-accasim", action="store_true")
    ap.add_argument("--cut", type=int, default=77_000, help="jobs of the largest trace for the cut trace")
    args = ap.parse_args()
    path = args.trace or _largest_trace()
    console = Console(width=170)
    rows: list[dict[str, Any]] = []
    for scheduler in ("fcfs", "easy"):
        console.print(f"[bold]{scheduler}[/] on {path.name}: suanli …", highlight=False)
        secs, summ, w = ours(path, scheduler, args.repeat, args.jobs)
        assert w.max_procs
        row: dict[str, Any] = {
            "scheduler": scheduler, "jobs": summ["jobs"], "suanli_s": round(secs, 3),
            "suanli_jobs_per_s": round(summ["jobs"] / secs),
            "suanli_mean_wait_s": summ["mean_wait_s"], "suanli_mean_bsld": summ["mean_bsld"],
        }
        if not args.no_accasim:
            console.print(f"[bold]{scheduler}[/]: AccaSim (minutes) …")
            with tempfile.TemporaryDirectory() as tmp:
                starts, acc_s = run_accasim(w, w.max_procs, scheduler, Path(tmp))
            recs = [JobRecord(j.id, j.submit, starts[j.id], starts[j.id] + j.runtime, j.procs)
                    for j in w.jobs]
            acc = summarize(recs, w.max_procs)
            differ = sum(1 for j in w.jobs if starts[j.id] != summ["starts"][j.id])
            row.update({
                "accasim_s": round(acc_s, 2), "accasim_jobs_per_s": round(len(w.jobs) / acc_s),
                "ratio": round(acc_s / secs, 1), "accasim_mean_wait_s": acc["mean_wait_s"],
                "accasim_mean_bsld": acc["mean_bsld"], "jobs_starting_differently": differ,
            })
        rows.append(row)

    table = Table(title=f"Digital twin vs AccaSim 1.1.3 — {path.name} ({rows[0]['jobs']:,} jobs)")
    for col in ("scheduler", "suanli s", "suanli jobs/s", "AccaSim s", "AccaSim jobs/s", "ratio",
                "mean wait s (suanli / AccaSim)", "mean bsld (suanli / AccaSim)", "starts differ"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["scheduler"].upper(), f"{r['suanli_s']:.2f}", f"{r['suanli_jobs_per_s']:,}",
            f"{r.get('accasim_s', '–')}",
            f"{r['accasim_jobs_per_s']:,}" if "accasim_s" in r else "–",
            f"{r['ratio']:.0f}×" if "ratio" in r else "–",
            f"{r['suanli_mean_wait_s']:,.0f} / {r.get('accasim_mean_wait_s', float('nan')):,.0f}",
            f"{r['suanli_mean_bsld']:.2f} / {r.get('accasim_mean_bsld', float('nan')):.2f}",
            f"{r.get('jobs_starting_differently', '–')}",
        )
    console.print(table)

    console.print("[bold]the whole command[/]: suanli simulate trace … (with and without plots) …")
    easy = next((r for r in rows if r["scheduler"] == "easy" and "accasim_s" in r), None)
    known = {path.name: float(easy["accasim_s"])} if easy is not None and not args.jobs else {}
    with tempfile.TemporaryDirectory() as tmp:
        traces = [cut_trace(path, args.cut, Path(tmp)), path, TRACES / "KTH-SP2-1996-2.1-cln.swf.gz"]
        cli = whole_command(traces, args.repeat, not args.no_accasim, known)
    t2 = Table(title=f"The whole `suanli simulate trace --scheduler easy` command, best of {args.repeat} "
                     f"({os.cpu_count()} cores)")
    for col in ("trace", "jobs", "default s", "--no-plots s", "default / --no-plots", "AccaSim EASY s",
                "AccaSim / default", "AccaSim / --no-plots"):
        t2.add_column(col, justify="right")
    for r in cli:
        t2.add_row(r["trace"], f"{r['jobs']:,}", f"{r['cli_s']:.2f}", f"{r['cli_no_plots_s']:.2f}",
                   f"{r['plots_ratio']:.2f}×", f"{r.get('accasim_easy_s', '–')}",
                   f"{r['accasim_over_cli']:.0f}×" if "accasim_over_cli" in r else "–",
                   f"{r['accasim_over_cli_no_plots']:.0f}×" if "accasim_over_cli" in r else "–")
    console.print(t2)
    ok_plots = all(r["plots_ratio"] <= 1.3 for r in cli)
    ok_fast = all(r.get("accasim_over_cli", 50) >= 50 for r in cli)
    console.print(f"default within 1.3× of --no-plots: {'met' if ok_plots else 'NOT met'}; "
                  f"≥ 50× faster than AccaSim: {'met' if ok_fast else 'NOT met'}", highlight=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"trace": path.name, "machine": {"cpus": platform.machine(), "python": platform.python_version(),
                                           "cores": os.cpu_count()},
           "repeat": args.repeat, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
           "whole_command": cli}
    (RESULTS / "sim-latest.json").write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"→ {RESULTS / 'sim-latest.json'}")


if __name__ == "__main__":
    main()
