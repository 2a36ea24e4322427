"""API benchmark on SQLite and PostgreSQL while the scheduler runs (issue 3 targets).

1. open loop: job submissions at a fixed rate (default 200/s for 60 s); latency is measured from
   each request's *scheduled* time, so a slow server cannot hide queueing (no coordinated omission);
2. saturation: 50 concurrent clients submitting as fast as they can, against the same number of
   clients reading /api/v1/health (the framework's floor: the ratio shows what suanli's work costs);
3. `GET /api/v1/jobs` latency with >= 10,000 jobs in the database.

On SQLite and on PostgreSQL in the same run (`--db both`, the default; PostgreSQL is started with
tests/services/postgres.sh, as root, or `--database-url` names one: each run gets a fresh schema).

During phases 1 and 2 a probe reads /api/v1/health ten times a second on its own connection: its
latency shows whether submissions hold up everything else (blocking work on the event loop).

A real `suanli serve --demo` process is started on a free port with a fresh SUANLI_HOME. Jobs go to
a bench pool of 2 units (`true` as the command), so the queue grows as in a busy network and the
scheduler works on every pass. Prints a table and writes bench/results/api-latest.json (the first
database's figures at the top level, as before; PostgreSQL's under "postgres" in a `both` run).

    python bench/api.py [--rate 200] [--duration 60] [--clients 50] [--seed 1]
                        [--db sqlite|postgres|both] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from demo_server import demo_server, fresh_schema, postgres
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
JOB = {"name": "bench", "command": ["true"], "walltime_s": 60,
       "resources": {"device": "cpu", "model": "bench-cpu", "units": 1}}
BENCH_CENTER = {
    "slug": "bench", "name_zh": "压测中心", "name_en": "Bench center", "kind": "edge",
    "connector": "local", "connector_config": {"center": "bench"}, "emulated": True,
    "pools": [{"name": "bench", "device_kind": "cpu", "device_model": "bench-cpu",
               "units_per_node": 2, "nodes": 1, "memory_gb_per_node": 4,
               "price_fen_per_unit_hour": 1, "tflops_fp32": 0.1}],
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _session(url: str, token: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp, not httpx, generates the load: on these 2 cores httpx's async pool tops out
    # near 450 requests/s against an empty FastAPI app, aiohttp near 2,700.
    return aiohttp.ClientSession(
        url, headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30))


class HealthProbe:
    """GET /api/v1/health every `interval` seconds on its own connection while a phase runs."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self.url, self.interval = url, interval
        self.lat: list[float] = []
        self.errors = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession(self.url, connector=aiohttp.TCPConnector(limit=1),
                                         timeout=aiohttp.ClientTimeout(total=30)) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    async with client.get("/api/v1/health") as r:
                        await r.read()
                        if r.status != 200:
                            self.errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.errors += 1
                self.lat.append(time.perf_counter() - t0)
                await asyncio.sleep(max(0.0, self.interval - (time.perf_counter() - t0)))

    def __enter__(self) -> HealthProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> dict[str, Any]:
        self._stop.set()
        assert self._task is not None
        await self._task
        return {"requests": len(self.lat), "p50_ms": round(pct(self.lat, 0.5) * 1000, 2),
                "p99_ms": round(pct(self.lat, 0.99) * 1000, 2),
                "max_ms": round(max(self.lat, default=float("nan")) * 1000, 2), "errors": self.errors}

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


async def probed(url: str, phase: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a phase (a coroutine) with a HealthProbe beside it: (the phase's figures, the probe's)."""
    with HealthProbe(url) as probe:
        result = await phase
        return result, await probe.stop()


async def open_loop(url: str, token: str, rate: float, duration: float) -> dict[str, Any]:
    lat: list[float] = []
    errors: dict[str, int] = {}
    async with _session(url, token, 256) as client:
        start = time.perf_counter()
        n = int(rate * duration)

        async def one(i: int) -> None:
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with client.post("/api/v1/jobs", json=JOB) as r:
                    await r.read()
                    ok, key = r.status == 201, str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, key = False, type(exc).__name__
            lat.append(time.perf_counter() - scheduled)
            if not ok:
                errors[key] = errors.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    return {"requests": n, "seconds": round(elapsed, 2), "achieved_rate": round(n / elapsed, 1),
            "p50_ms": round(pct(lat, 0.5) * 1000, 2), "p99_ms": round(pct(lat, 0.99) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2), "errors": errors}


async def closed_loop(url: str, token: str, clients: int, seconds: float, method: str,
                      path: str) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    async with _session(url, token, clients) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    async with client.request(method, path,
                                              json=JOB if method == "POST" else None) as r:
                        await r.read()
                        if r.status >= 400:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"requests": len(lat), "throughput_rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(pct(lat, 0.5) * 1000, 2), "p99_ms": round(pct(lat, 0.99) * 1000, 2),
            "errors": errors}


def list_latency(url: str, token: str, n: int) -> dict[str, Any]:
    lat = []
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        total = client.get("/api/v1/jobs", params={"limit": 1}).json()["total"]
        for i in range(n):
            params: dict[str, Any] = {"limit": 50, "offset": (i % 20) * 50}
            if i % 4 == 3:
                params["state"] = "QUEUED"
            t0 = time.perf_counter()
            r = client.get("/api/v1/jobs", params=params)
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return {"jobs_in_db": total, "requests": n, "p50_ms": round(pct(lat, 0.5) * 1000, 2),
            "p99_ms": round(pct(lat, 0.99) * 1000, 2),
            "mean_ms": round(statistics.mean(lat) * 1000, 2)}


def measure(args: argparse.Namespace, console: Console,
            database_url: str | None) -> dict[str, Any]:
    """The three phases against one fresh server (SQLite in its home, or `database_url`)."""
    home = Path(tempfile.mkdtemp(prefix="suanli-bench."))
    try:
        with demo_server(home, database_url) as (url, creds):
            admin, tenant = creds["platform_admin"], creds["tenant_a"]
            r = httpx.post(f"{url}/api/v1/centers", json=BENCH_CENTER,
                           headers={"Authorization": f"Bearer {admin}"})
            r.raise_for_status()
            console.print(f"[dim]seed {args.seed}; server {url}; SUANLI_HOME {home}[/]")
            console.print(f"open loop: {args.rate:g}/s for {args.duration:g}s …")
            ol, ol_health = asyncio.run(probed(url, open_loop(url, tenant, args.rate,
                                                              args.duration)))
            console.print(f"saturation: {args.clients} clients for {args.saturation_seconds:g}s …")
            sat, sat_health = asyncio.run(probed(url, closed_loop(
                url, tenant, args.clients, args.saturation_seconds, "POST", "/api/v1/jobs")))
            floor = asyncio.run(closed_loop(url, tenant, args.clients, args.saturation_seconds,
                                            "GET", "/api/v1/health"))
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant}"}) as c:
                while c.get("/api/v1/jobs", params={"limit": 1}).json()["total"] < args.min_jobs:
                    c.post("/api/v1/jobs", json=JOB)
            console.print(f"list latency: {args.list_requests} requests …")
            lst = list_latency(url, tenant, args.list_requests)
            health = httpx.get(f"{url}/api/v1/health").json()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    targets = {
        "open_loop_p99_ms<=100": ol["p99_ms"] <= 100,
        "open_loop_no_errors": not ol["errors"],
        "open_loop_rate>=target": ol["achieved_rate"] >= 0.97 * args.rate,
        "list_p99_ms<=50": lst["p99_ms"] <= 50,
    }
    return {
        "database": "postgresql 15" if database_url else "sqlite (WAL)",
        "scheduler_last_pass": health["scheduler"],
        "open_loop": {"rate": args.rate, "duration_s": args.duration, **ol},
        "health_during_open_loop": ol_health,
        "saturation_submit": {"clients": args.clients, **sat},
        "health_during_saturation": sat_health,
        "saturation_health_floor": {"clients": args.clients, **floor},
        "submit_vs_floor_throughput_ratio": round(sat["throughput_rps"]
                                                  / max(1e-9, floor["throughput_rps"]), 3),
        "list_jobs": lst, "targets_met": targets,
    }


def table(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> Table:
    """One row per phase, one group of columns per database."""
    t = Table(title=f"suanli API benchmark ({' vs '.join(runs)}, scheduler running)")
    t.add_column("phase")
    for db in runs:
        for col in ("rate / thr.", "p50 ms", "p99 ms", "err"):
            t.add_column(f"{db}\n{col}" if col == "rate / thr." else col, justify="right")

    def cells(key: str, rate: str | None) -> list[str]:
        out: list[str] = []
        for r in runs.values():
            ph = r[key]
            errors = ph["errors"]
            n_err = sum(errors.values()) if isinstance(errors, dict) else errors
            shown = "-" if rate is None else (f"{ph[rate]}/s" if rate in ph else "-")
            out += [shown, str(ph["p50_ms"]), str(ph["p99_ms"]), str(n_err)]
        return out

    t.add_row(f"open loop {args.rate:g}/s × {args.duration:g}s", *cells("open_loop",
                                                                         "achieved_rate"))
    t.add_row(f"saturation submit, {args.clients} clients",
              *cells("saturation_submit", "throughput_rps"))
    t.add_row("GET /health, 10/s, during the open loop", *cells("health_during_open_loop", None))
    t.add_row("GET /health, 10/s, during saturation", *cells("health_during_saturation", None))
    t.add_row(f"floor: GET /health, {args.clients} clients",
              *cells("saturation_health_floor", "throughput_rps"))
    jobs = "/".join(f"{r['list_jobs']['jobs_in_db']:,}" for r in runs.values())
    t.add_row(f"GET /jobs ({jobs} jobs)", *[c for r in runs.values() for c in (
        "-", str(r["list_jobs"]["p50_ms"]), str(r["list_jobs"]["p99_ms"]), "0")])
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--saturation-seconds", type=float, default=15.0)
    ap.add_argument("--list-requests", type=int, default=1000)
    ap.add_argument("--min-jobs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1, help="recorded; the load is deterministic")
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both",
                    help="SQLite, PostgreSQL, or both in this run (default; PostgreSQL is "
                         "started with tests/services/postgres.sh, as root)")
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL (postgresql+psycopg://…) to use instead of starting one; "
                         "each run gets a fresh schema in it")
    args = ap.parse_args()
    console = Console(width=150)
    runs: dict[str, dict[str, Any]] = {}
    if args.db in ("sqlite", "both"):
        console.print("[bold]SQLite[/]")
        runs["sqlite"] = measure(args, console, None)
    if args.db in ("postgres", "both"):
        console.print("[bold]PostgreSQL[/]")
        with postgres(args.database_url) as pg:
            runs["postgres"] = measure(args, console, fresh_schema(pg, "bench_api"))

    first = next(iter(runs.values()))
    result: dict[str, Any] = {
        "benchmark": "api", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "platform": platform.platform()},
        **first,  # the first database's figures at the top, as before PostgreSQL was added
    }
    if "postgres" in runs and "sqlite" in runs:
        result["postgres"] = runs["postgres"]
        sq, pg = runs["sqlite"], runs["postgres"]
        result["postgres_vs_sqlite"] = {
            "saturation_throughput_ratio": round(pg["saturation_submit"]["throughput_rps"]
                                                 / max(1e-9, sq["saturation_submit"]
                                                       ["throughput_rps"]), 3),
            "open_loop_p99_ratio": round(pg["open_loop"]["p99_ms"]
                                         / max(1e-9, sq["open_loop"]["p99_ms"]), 3),
            "list_p99_ratio": round(pg["list_jobs"]["p99_ms"]
                                    / max(1e-9, sq["list_jobs"]["p99_ms"]), 3),
        }
    console.print(table(args, runs))
    for db, r in runs.items():
        console.print(f"{db}: submit / floor throughput {r['submit_vs_floor_throughput_ratio']}")
        for k, v in r["targets_met"].items():
            console.print(f"  {'[green]met' if v else '[red]missed'}[/] {k}")
    if "postgres_vs_sqlite" in result:
        console.print(f"PostgreSQL / SQLite: {result['postgres_vs_sqlite']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api-latest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False)
                                             + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
