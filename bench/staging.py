"""Staging benchmark: what a 100 MB work folder adds to a job's start, on each backend.

A real `suanli serve --demo` gets three bench centers — the local executor, a real Slurm and a
real Ray head (tests/services/*.sh) — and, per backend, jobs with no work folder and jobs with a
100 MB one (random bytes: nothing compresses) run one after the other. For each job:

* submit → RUNNING: from the submission to the job's RUNNING state in suanli;
* submit → command: from the submission to the moment its command really started (it prints
  `date +%s.%N` first) — the number a user feels. On Slurm the work folder is fetched by the batch
  script after Slurm reports RUNNING, so only this one includes staging there; on Ray the package
  is built and uploaded before the submit; on the local executor the supervisor stages before it
  says the job runs.

The work folder is an artifact put beside the server (its store and database), and the jobs are
submitted through the services, as tests/integration/test_staging_centers.py does. Prints a table
and writes bench/results/staging-latest.json.

    python bench/staging.py [--mb 100] [--reps 2] [--only local|slurm|ray] [--seed 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from connectors import service  # tests/services/*.sh, started and stopped
from demo_server import demo_server
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from suanli.config import Settings
from suanli.domain.enums import DeviceKind
from suanli.services.auth import principal_of
from suanli.services.context import Platform
from suanli.services.jobs import JobInput, submit_job
from suanli.store import models as m
from suanli.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COMMAND = "date +%s.%N; ls -l data.bin 2>/dev/null | wc -l"


def pool(name: str, kind: str, model: str, units: int) -> dict[str, Any]:
    return {"name": name, "device_kind": kind, "device_model": model, "units_per_node": units,
            "nodes": 1, "memory_gb_per_node": 2, "price_fen_per_unit_hour": 1,
            "tflops_fp32": 0.1}


def center(slug: str, connector: str, config: dict[str, Any], pools: list[Any]) -> dict[str, Any]:
    return {"slug": slug, "name_zh": "压测中心", "name_en": f"Bench {connector}",
            "kind": "ai", "district": "bench", "connector": connector,
            "connector_config": config, "pools": pools}


def workdir_tar(mb: int, seed: int) -> bytes:
    rng = random.Random(seed)
    data = rng.randbytes(mb * 1_000_000)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def run_one(p: Platform, tenant: httpx.Client, model: str, device: DeviceKind,
            workdir: str | None) -> dict[str, float]:
    with p.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == "alice"))
        assert user is not None
        who = principal_of(user)
    t0 = time.time()
    job = submit_job(p, who, JobInput(
        name="bench-stage", command=["sh", "-c", COMMAND], device=device, model=model, units=1,
        walltime_s=600, workdir_sha256=workdir))
    running_at: float | None = None
    while True:
        data = tenant.get(f"/api/v1/jobs/{job.id}").json()
        if running_at is None and data["state"] in ("RUNNING", "COMPLETED", "FAILED"):
            running_at = time.time()  # when suanli says so (polled every 0.1 s)
        if data["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            break
        time.sleep(0.1)
    if data["state"] != "COMPLETED":
        raise RuntimeError(f"job {job.id} on {model}: {data['state']} {data.get('state_reason')}")
    out = tenant.get(f"/api/v1/jobs/{job.id}/logs").json()["data"].split()
    if workdir is not None and out[1] != "1":
        raise RuntimeError(f"job {job.id}: the work folder did not arrive ({out})")
    return {"running_s": (running_at or time.time()) - t0, "command_s": float(out[0]) - t0}


def put_workdir(p: Platform, data: bytes) -> str:
    with p.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == "alice"))
        assert user is not None and user.tenant_id is not None
        tenant_id = user.tenant_id
    stored = p.blobs.put(tenant_id, [data], max_size=len(data) + 1)
    with p.db.session() as s:
        if s.scalar(select(m.Artifact).where(m.Artifact.tenant_id == tenant_id,
                                             m.Artifact.sha256 == stored.sha256)) is None:
            s.add(m.Artifact(tenant_id=tenant_id, sha256=stored.sha256, size_bytes=stored.size,
                             kind="workdir", name="bench", created_at=p.clock.now()))
    return stored.sha256


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", choices=["local", "slurm", "ray"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    console = Console()
    console.print(f"seed {args.seed}, work folder {args.mb} MB, {args.reps} jobs each")
    backends = [args.only] if args.only else ["local", "slurm", "ray"]
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-stage."))
    states: list[Path] = []
    results: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            url, creds = stack.enter_context(demo_server(home))
            admin = stack.enter_context(httpx.Client(base_url=url, timeout=120, headers={
                "Authorization": f"Bearer {creds['platform_admin']}"}))
            tenant = stack.enter_context(httpx.Client(base_url=url, timeout=120, headers={
                "Authorization": f"Bearer {creds['tenant_a']}"}))
            targets: dict[str, tuple[str, DeviceKind]] = {}
            if "local" in backends:
                admin.post("/api/v1/centers", json=center(
                    "bench-local", "local", {"center": "bench-local", "work_limit_mb": 2048},
                    [pool("cpu", "cpu", "bench local CPU", 2)])).raise_for_status()
                targets["local"] = ("bench local CPU", DeviceKind.CPU)
            if "slurm" in backends:
                state = Path(tempfile.mkdtemp(prefix="sl.", dir="/tmp"))
                os.chmod(state, 0o755)
                states.append(state)
                env = stack.enter_context(service("slurm", dict(
                    os.environ, SLURM_STATE_DIR=str(state))))
                admin.post("/api/v1/centers", json=center("bench-slurm", "slurm", {
                    "socket": env["SLURMRESTD_SOCKET"], "output_dir": str(state / "out"),
                    "partitions": {"debug": "debug"}},
                    [pool("debug", "cpu", "bench Slurm CPU", 2)])).raise_for_status()
                targets["slurm"] = ("bench Slurm CPU", DeviceKind.CPU)
            if "ray" in backends:
                state = Path(tempfile.mkdtemp(prefix="ray.", dir="/tmp"))
                states.append(state)
                env = stack.enter_context(service("ray", dict(
                    os.environ, RAY_STATE_DIR=str(state), RAY_NUM_CPUS="2")))
                admin.post("/api/v1/centers", json=center(
                    "bench-ray", "ray", {"url": env["RAY_DASHBOARD_URL"]},
                    [pool("cpu", "cpu", "bench Ray CPU", 2)])).raise_for_status()
                targets["ray"] = ("bench Ray CPU", DeviceKind.CPU)
            settings = Settings(home=home, database_url=f"sqlite:///{home / 'suanli.db'}")
            db = Database(settings.database_url)
            p = Platform(db=db, settings=settings)
            sha = put_workdir(p, workdir_tar(args.mb, args.seed))
            for name, (model, device) in targets.items():
                run_one(p, tenant, model, device, None)  # warm-up (worker start, Ray's driver)
                rows: dict[str, list[dict[str, float]]] = {"none": [], "workdir": []}
                for _ in range(args.reps):
                    for variant, wd in (("none", None), ("workdir", sha)):
                        console.print(f"{name}: {variant} …")
                        rows[variant].append(run_one(p, tenant, model, device, wd))
                results[name] = {
                    variant: {k: round(statistics.median(r[k] for r in runs), 3)
                              for k in ("running_s", "command_s")}
                    for variant, runs in rows.items()}
                results[name]["added_s"] = round(results[name]["workdir"]["command_s"]
                                                 - results[name]["none"]["command_s"], 3)
            db.dispose()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        for state in states:
            shutil.rmtree(state, ignore_errors=True)
    table = Table(title=f"submit → start, median of {args.reps} (s): no work folder vs "
                        f"{args.mb} MB")
    for col in ("backend", "RUNNING (none)", "command (none)", f"RUNNING ({args.mb} MB)",
                f"command ({args.mb} MB)", "added"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['none']['running_s']:.2f}", f"{r['none']['command_s']:.2f}",
                      f"{r['workdir']['running_s']:.2f}", f"{r['workdir']['command_s']:.2f}",
                      f"{r['added_s']:+.2f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = {"bench": "staging", "seed": args.seed, "workdir_mb": args.mb, "reps": args.reps,
           "at": datetime.now(UTC).isoformat(), "python": sys.version.split()[0],
           "machine": platform.machine(), "cpus": os.cpu_count(), "results": results}
    name = f"staging-{args.only}-latest.json" if args.only else "staging-latest.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
