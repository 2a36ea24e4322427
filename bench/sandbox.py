"""What the job sandbox costs: the local executor's run of a job against a bare process, in one run.

Three paths run the same short command (`true`), one after another, N times each:

* bare: `subprocess.run(["sh", "-c", "true"])` — a process, nothing else (the floor);
* bwrap: the same command in bubblewrap with the executor's namespaces, as root, no user switch,
  no mounted work folder (what the sandbox alone costs);
* suanli: the local executor end to end — submit, the detached supervisor in its own mount
  namespace, the tenant's user, the tmpfs work folder, bubblewrap, setpriv — until `status()`
  reports the run ended (polled every 5 ms).

Then `--parallel` jobs of `sleep 1` are submitted at once and the time until all have ended is
compared with the 1 s they sleep. Prints a table and writes bench/results/sandbox-latest.json.

    python bench/sandbox.py [--jobs 50] [--parallel 16] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from suanli.connectors import RunRequest, create
from suanli.connectors.local import LocalConnector

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BWRAP = ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink",
         "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
         "--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
         "--die-with-parent", "--new-session"]


def timed(n: int, once: Callable[[int], None]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        once(i)
        out.append(time.perf_counter() - t0)
    return out


def wait_ended(conn: LocalConnector, key: str) -> None:
    while not conn.status(key).state.is_terminal:
        time.sleep(0.005)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(samples), "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
            "mean_ms": round(1000 * statistics.fmean(ordered), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=50, help="runs per path")
    ap.add_argument("--parallel", type=int, default=16, help="jobs of `sleep 1` at once")
    ap.add_argument("--seed", type=int, default=1, help="recorded; the load is deterministic")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("the sandbox needs root: run as root (as `make bench` in CI does)", file=sys.stderr)
        return 1
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-sandbox."))
    conn = create("local", {"center": "bench", "pools": {"cpu": 4096}}, home)
    assert isinstance(conn, LocalConnector)

    def request(key: str, command: list[str]) -> RunRequest:
        return RunRequest(run_key=key, job_id=1, command=command, units=1, nodes=1,
                          walltime_s=60, pool="cpu", tenant_id=1)

    def through_suanli(i: int) -> None:
        key = f"seq-{i}"
        conn.submit(request(key, ["true"]))
        wait_ended(conn, key)

    paths = {
        "bare": timed(args.jobs, lambda i: subprocess.run(["sh", "-c", "true"], check=True)),
        "bwrap": timed(args.jobs, lambda i: subprocess.run([*BWRAP, "sh", "-c", "true"],
                                                           check=True)),
        "suanli": timed(args.jobs, through_suanli),
    }
    t0 = time.perf_counter()
    keys = [f"par-{i}" for i in range(args.parallel)]
    for key in keys:
        conn.submit(request(key, ["sleep", "1"]))
    for key in keys:
        wait_ended(conn, key)
    parallel_s = time.perf_counter() - t0

    results = {name: summary(samples) for name, samples in paths.items()}
    bare = results["bare"]["p50_ms"]
    table = Table(title=f"the job sandbox's cost ({args.jobs} runs of `true` per path, seed "
                        f"{args.seed})")
    for col in ("path", "p50 ms", "p95 ms", "mean ms", "p50 / bare"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(name, str(r["p50_ms"]), str(r["p95_ms"]), str(r["mean_ms"]),
                      f"{r['p50_ms'] / bare:.1f}×")
    console = Console()
    console.print(table)
    console.print(f"{args.parallel} sandboxed jobs of `sleep 1` at once: all ended after "
                  f"{parallel_s:.2f} s ({parallel_s - 1:.2f} s over the sleep)")
    out = {"benchmark": "sandbox", "when": datetime.now(UTC).isoformat(timespec="seconds"),
           "seed": args.seed, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "paths": results, "parallel": {"jobs": args.parallel, "sleep_s": 1.0,
                                          "all_ended_s": round(parallel_s, 3)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sandbox-latest.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
