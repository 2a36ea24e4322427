"""Connector dispatch benchmark: suanli against each backend's own client, in the same run.

Two real backends are started here (the project's own scripts in tests/services/):

* Slurm: `sbatch` directly against suanli -> slurmrestd;
* Ray: Ray's own `JobSubmissionClient` (what `ray job submit` uses, without the CLI's start-up)
  directly against suanli -> the Ray Jobs REST API.

For each path, N short jobs are submitted as fast as the path allows; every job writes the time
it started (`date +%s.%N`) to a file, so submit-to-running is measured the same way for both:
from the moment the job was handed to the path (sbatch call / client call / suanli API call) to
the moment it really started. Dispatch rate = jobs handed to the backend per second (for suanli:
until the last job has left suanli's queue). The single-node test Slurm claims 64 CPUs and the
Ray head 16, so that the jobs do not queue behind each other. Prints a table and writes
bench/results/connectors-latest.json.

    python bench/connectors.py [--jobs 200] [--ray-jobs 200] [--only slurm|ray] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from demo_server import demo_server
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "tests" / "services"
RESULTS = ROOT / "bench" / "results"
TARGET = 1.2

RAY_CLIENT = r"""
import json, sys, time
from ray.job_submission import JobSubmissionClient
url, n, stamps = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = JobSubmissionClient(url)
submitted = {}
for i in range(n):
    t = time.time()
    client.submit_job(entrypoint=f"sh -c 'date +%s.%N > {stamps}/direct-{i}'",
                      entrypoint_num_cpus=1)
    submitted[str(i)] = t
print(json.dumps(submitted))
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def wait_stamps(directory: Path, prefix: str, n: int, timeout: float = 600) -> dict[str, float]:
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


def compare(direct: dict[str, Any], suanli: dict[str, Any]) -> dict[str, Any]:
    ratio = suanli["p50_s"] / direct["p50_s"] if direct["p50_s"] else float("nan")
    return {"direct": direct, "suanli": suanli, "p50_overhead_ratio": round(ratio, 3),
            "target_ratio_max": TARGET, "target_met": ratio <= TARGET}


@contextmanager
def service(name: str, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Install (idempotent) and start a backend from tests/services/; yield its environment."""
    script = str(SERVICES / f"{name}.sh")
    subprocess.run([script, "install"], check=True, capture_output=True)
    out = subprocess.run([script, "start"], env=env, check=True, capture_output=True,
                         text=True).stdout
    env = dict(env)
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = v.strip("'\"")
    try:
        yield env
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True)


@contextmanager
def suanli_server(home: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """`suanli serve --demo` in its own process; yields (platform admin, tenant) clients."""
    with demo_server(home) as (url, creds), \
         httpx.Client(base_url=url, timeout=60, headers={
             "Authorization": f"Bearer {creds['platform_admin']}"}) as admin, \
         httpx.Client(base_url=url, timeout=60, headers={
             "Authorization": f"Bearer {creds['tenant_a']}"}) as tenant:
        yield admin, tenant


def through_suanli(center: dict[str, Any], model: str, stamps: Path, n: int) -> dict[str, Any]:
    """Register `center`, submit n one-unit jobs of `model` through the API, time them."""
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-conn."))
    try:
        with suanli_server(home) as (admin, tenant):
            admin.post("/api/v1/centers", json=center).raise_for_status()
            submitted: dict[str, float] = {}
            t0 = time.time()
            for _ in range(n):
                t = time.time()
                r = tenant.post("/api/v1/jobs", json={
                    "name": "bench", "walltime_s": 600, "district": "bench",
                    "resources": {"device": "cpu", "model": model, "units": 1},
                    "command": ["sh", "-c", f"date +%s.%N > {stamps}/suanli-$SUANLI_JOB_ID"]})
                r.raise_for_status()
                submitted[str(r.json()["id"])] = t
            while True:  # until every job was handed to the backend
                page = tenant.get("/api/v1/jobs", params={"limit": 1, "state": "QUEUED"}).json()
                if page["total"] == 0:
                    break
                time.sleep(0.5)  # a light poll: the backend shares these 2 cores
            seconds = time.time() - t0
            started = wait_stamps(stamps, "suanli", n)
            return summary([started[k] - t for k, t in submitted.items()], seconds, n)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def pool(name: str, model: str, units: int, memory_gb: int) -> dict[str, Any]:
    return {"name": name, "device_kind": "cpu", "device_model": model, "units_per_node": units,
            "nodes": 1, "memory_gb_per_node": memory_gb, "price_fen_per_unit_hour": 1,
            "tflops_fp32": 0.1}


def center(slug: str, connector: str, config: dict[str, Any], pools: list[Any]) -> dict[str, Any]:
    return {"slug": slug, "name_zh": "压测中心", "name_en": f"Bench {connector}",
            "kind": "supercomputing" if connector == "slurm" else "ai", "district": "bench",
            "connector": connector, "connector_config": config, "pools": pools}


def stamp_dir(state: Path) -> Path:
    stamps = state / "stamps"
    stamps.mkdir()
    os.chmod(stamps, 0o777)
    return stamps


def bench_slurm(n: int, say: Callable[[str], None]) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="sl.", dir="/tmp"))
    os.chmod(state, 0o755)
    base = dict(os.environ, SLURM_STATE_DIR=str(state), SLURM_CPUS="64", SLURM_MEM_MB="16000")
    try:
        with service("slurm", base) as env:
            stamps = stamp_dir(state)
            say(f"sbatch: {n} jobs …")
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
            direct = summary([started[k] - t for k, t in submitted.items()], seconds, n)
            say(f"suanli → slurmrestd: {n} jobs …")
            sock = env["SLURMRESTD_SOCKET"]
            suanli = through_suanli(center("bench-slurm", "slurm", {
                "socket": sock, "output_dir": str(stamps / "out"),
                "partitions": {"debug": "debug"}}, [pool("debug", "bench CPU", 64, 15)]),
                "bench CPU", stamps, n)
            return compare(direct, suanli)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def ray_idle(url: str, timeout: float = 300) -> None:
    """Wait until the Ray cluster has no job that is pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{url}/api/jobs/", timeout=30).json()
        if all(j.get("status") not in ("PENDING", "RUNNING") for j in jobs):
            return
        time.sleep(0.5)


def bench_ray(n: int, say: Callable[[str], None]) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="ray.", dir="/tmp"))
    base = dict(os.environ, RAY_STATE_DIR=str(state), RAY_NUM_CPUS="16")
    venv = Path(os.environ.get("RAY_VENV", Path.home() / ".cache/recipes/ray-venv"))
    try:
        with service("ray", base) as env:
            url = env["RAY_DASHBOARD_URL"]
            stamps = stamp_dir(state)
            say(f"Ray JobSubmissionClient: {n} jobs …")
            t0 = time.time()
            out = subprocess.run([str(venv / "bin" / "python"), "-c", RAY_CLIENT, url, str(n),
                                  str(stamps)], capture_output=True, text=True, check=True, env=env)
            seconds = time.time() - t0
            submitted = {k: float(v) for k, v in json.loads(out.stdout).items()}
            # the client's own import and connect are not dispatch time
            seconds = max(submitted.values()) - min(submitted.values()) + seconds / n
            started = wait_stamps(stamps, "direct", n)
            direct = summary([started[k] - t for k, t in submitted.items()], seconds, n)
            ray_idle(url)
            say(f"suanli → Ray Jobs API: {n} jobs …")
            suanli = through_suanli(center("bench-ray", "ray", {"url": url},
                                           [pool("cpu", "bench Ray CPU", 16, 8)]),
                                    "bench Ray CPU", stamps, n)
            ray_idle(url)
            return compare(direct, suanli)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200, help="jobs per path on Slurm")
    ap.add_argument("--ray-jobs", type=int, default=200, help="jobs per path on Ray")
    ap.add_argument("--only", choices=("slurm", "ray"), help="run one backend only")
    ap.add_argument("--seed", type=int, default=1, help="recorded; the load is deterministic")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 132))
    console.print(f"[dim]seed {args.seed}[/]")
    result: dict[str, Any] = {
        "benchmark": "connectors", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed, "machine": {"cpus": os.cpu_count(),
                                       "python": platform.python_version()}}
    labels = {"slurm": ("sbatch (direct)", "suanli → slurmrestd"),
              "ray": ("Ray JobSubmissionClient (direct)", "suanli → Ray Jobs API")}
    if args.only != "ray":
        result["slurm"] = bench_slurm(args.jobs, console.print)
    if args.only != "slurm":
        result["ray"] = bench_ray(args.ray_jobs, console.print)
    t = Table(title="dispatch to real backends: suanli against the backend's own client (same run)")
    for col in ("backend", "path", "jobs", "dispatch/s", "submit→running p50", "p95", "mean",
                "p50 ratio"):
        t.add_column(col)
    for backend in ("slurm", "ray"):
        if backend not in result:
            continue
        r = result[backend]
        for i, (label, key) in enumerate(zip(labels[backend], ("direct", "suanli"), strict=True)):
            x = r[key]
            t.add_row(backend if i == 0 else "", label, str(x["jobs"]), str(x["dispatch_per_s"]),
                      f"{x['p50_s']} s", f"{x['p95_s']} s", f"{x['mean_s']} s",
                      f"{r['p50_overhead_ratio']:.2f}" if i else "")
    console.print(t)
    for backend in ("slurm", "ray"):
        if backend in result:
            r = result[backend]
            console.print(f"{backend}: suanli / direct p50 submit→running "
                          f"{r['p50_overhead_ratio']:.2f} (target ≤ {TARGET}: "
                          f"{'met' if r['target_met'] else 'NOT met'})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "connectors-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
