"""Connector dispatch benchmark: suanli -> Slurm against sbatch directly, in the same run.

For each path, 200 short jobs are submitted as fast as the path allows; every job writes the time
it started (`date +%s.%N`) to a file, so submit-to-running is measured the same way for both:
from the moment the job was handed to the path (sbatch call / suanli API call) to the moment it
really started on the node. Dispatch rate = jobs handed to Slurm per second (for suanli: until the
last job has a Slurm id). The single-node test Slurm claims 64 CPUs so that the jobs do not queue
behind each other. Prints a table and writes bench/results/connectors-latest.json.

    python bench/connectors.py [--jobs 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "tests" / "services"
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def wait_stamps(directory: Path, prefix: str, n: int, timeout: float = 300) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(directory.glob(f"{prefix}-*"))
        if len(files) >= n:
            out = {}
            for f in files:
                text = f.read_text().strip()
                if text:
                    out[f.name[len(prefix) + 1:]] = float(text)
            if len(out) >= n:
                return out
        time.sleep(0.2)
    raise RuntimeError(f"only {len(list(directory.glob(prefix + '-*')))} of {n} {prefix} jobs ran")


def summary(lat: list[float], seconds: float, n: int) -> dict[str, Any]:
    return {"jobs": n, "dispatch_seconds": round(seconds, 3),
            "dispatch_per_s": round(n / seconds, 1),
            "p50_s": round(pct(lat, 0.5), 3), "p95_s": round(pct(lat, 0.95), 3),
            "mean_s": round(statistics.mean(lat), 3)}


def direct(env: dict[str, str], stamps: Path, n: int) -> dict[str, Any]:
    submitted: dict[str, float] = {}
    t0 = time.time()
    for _ in range(n):
        t = time.time()
        out = subprocess.run(
            ["sbatch", "--parsable", "-p", "debug", "-o", "/dev/null", "-c", "1", "--wrap",
             f"date +%s.%N > {stamps}/direct-$SLURM_JOB_ID"],
            env=env, capture_output=True, text=True, check=True).stdout.strip()
        submitted[out.split(";")[0]] = t
    seconds = time.time() - t0
    started = wait_stamps(stamps, "direct", n)
    return summary([started[k] - t for k, t in submitted.items()], seconds, n)


def through_suanli(env: dict[str, str], stamps: Path, n: int, home: Path) -> dict[str, Any]:
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    senv = dict(os.environ, SUANLI_HOME=str(home), SUANLI_LOG_LEVEL="WARNING")
    server = subprocess.Popen([str(BIN / "suanli"), "serve", "--demo", "--port", str(port)],
                              env=senv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        creds = json.loads((home / "demo-credentials.json").read_text())
        admin = httpx.Client(base_url=url, timeout=60,
                             headers={"Authorization": f"Bearer {creds['platform_admin']}"})
        pools = admin.post("/api/v1/centers/discover", json={
            "connector": "slurm", "connector_config": {"socket": env["SLURMRESTD_SOCKET"]}}
        ).json()["pools"]
        cpu = next(p for p in pools if p["partition"] == "debug")
        admin.post("/api/v1/centers", json={
            "slug": "bench-slurm", "name_zh": "压测超算", "name_en": "Bench Slurm",
            "kind": "supercomputing", "district": "bench", "connector": "slurm",
            "connector_config": {"socket": env["SLURMRESTD_SOCKET"],
                                 "output_dir": str(stamps / "out"),
                                 "partitions": {"debug": "debug"}},
            "pools": [{"name": "debug", "device_kind": "cpu", "device_model": "bench CPU",
                       "units_per_node": cpu["units_per_node"], "nodes": cpu["nodes"],
                       "memory_gb_per_node": cpu["memory_gb_per_node"],
                       "price_fen_per_unit_hour": 1, "tflops_fp32": 0.1}]}).raise_for_status()
        tenant = httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {creds['tenant_a']}"})
        submitted: dict[str, float] = {}
        t0 = time.time()
        for _ in range(n):
            t = time.time()
            r = tenant.post("/api/v1/jobs", json={
                "name": "bench", "walltime_s": 600, "district": "bench",
                "resources": {"device": "cpu", "model": "bench CPU", "units": 1},
                "command": ["sh", "-c", f"date +%s.%N > {stamps}/suanli-$SUANLI_JOB_ID"]})
            r.raise_for_status()
            submitted[str(r.json()["id"])] = t
        while True:  # until every job was handed to Slurm
            page = tenant.get("/api/v1/jobs", params={"limit": 1, "state": "QUEUED"}).json()
            if page["total"] == 0:
                break
            time.sleep(0.05)
        seconds = time.time() - t0
        started = wait_stamps(stamps, "suanli", n)
        return summary([started[k] - t for k, t in submitted.items()], seconds, n)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1, help="recorded; the load is deterministic")
    args = ap.parse_args()
    console = Console()
    state = Path(tempfile.mkdtemp(prefix="sl.", dir="/tmp"))
    os.chmod(state, 0o755)
    env = dict(os.environ, SLURM_STATE_DIR=str(state), SLURM_CPUS="64", SLURM_MEM_MB="16000")
    subprocess.run([str(SERVICES / "slurm.sh"), "install"], check=True, capture_output=True)
    out = subprocess.run([str(SERVICES / "slurm.sh"), "start"], env=env, check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = v.strip("'\"")
    stamps = state / "stamps"
    stamps.mkdir()
    os.chmod(stamps, 0o777)
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-conn."))
    try:
        console.print(f"[dim]seed {args.seed}; Slurm state {state}[/]")
        console.print(f"sbatch: {args.jobs} jobs …")
        d = direct(env, stamps, args.jobs)
        console.print(f"suanli → slurmrestd: {args.jobs} jobs …")
        s = through_suanli(env, stamps, args.jobs, home)
    finally:
        subprocess.run([str(SERVICES / "slurm.sh"), "stop"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    ratio = s["p50_s"] / d["p50_s"] if d["p50_s"] else float("nan")
    result = {
        "benchmark": "connectors", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed, "machine": {"cpus": os.cpu_count(),
                                       "python": platform.python_version()},
        "slurm": {"sbatch": d, "suanli": s, "p50_overhead_ratio": round(ratio, 3),
                  "target_ratio_max": 1.2, "target_met": ratio <= 1.2},
    }
    t = Table(title="dispatch to Slurm: suanli against sbatch (same run)")
    for col in ("path", "jobs", "dispatch/s", "submit→running p50", "p95", "mean"):
        t.add_column(col)
    for name, r in (("sbatch (direct)", d), ("suanli → slurmrestd", s)):
        t.add_row(name, str(r["jobs"]), str(r["dispatch_per_s"]), f"{r['p50_s']} s",
                  f"{r['p95_s']} s", f"{r['mean_s']} s")
    console.print(t)
    console.print(f"suanli / sbatch p50 submit→running: {ratio:.2f} (target ≤ 1.2)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "connectors-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
