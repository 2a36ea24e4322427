"""Engine takeover after `kill -9` of the leader (issue 17), on a real PostgreSQL.

A `suanli serve --demo --no-engine` replica and two `suanli engine` candidates run as separate
processes on a fresh PostgreSQL (tests/services/postgres.sh, started and removed here). Each round
kills the leader with SIGKILL, submits a job through the replica at once, and measures from the
kill to (a) the new leader seen in `GET /api/v1/health` and (b) the first run placed under the
new epoch committed in the database (`runs.epoch`); then the killed candidate is started again,
so that two candidates are always there (the next kill waits until both have their liveness
connection open, engine/lease.py: a standby still starting is not a standby yet). Goal: p50 <= 5
s, max <= 10 s to the first placement.

Prints a table, writes bench/results/ha-latest.json; removes everything it made.

    python bench/ha.py [--kills 10] [--lease 10] [--renew 2]

Second part (`--part throughput`): submission throughput and latency with 1 and with 3 API
replicas in the same run. Three `suanli serve --demo --no-engine` replicas (each its own
SUANLI_HOME) and one `suanli engine` candidate on a fresh PostgreSQL schema; jobs go to a bench
pool of 2 units, so the queue grows and the engine works on every pass, as in bench/api.py.
Closed-loop clients (4 and 16 by default) submit for a fixed time, to replica 1 only, or
round-robin over the three; each point is run for every seed (the job mix and which of the two
goes first), and the machine's CPU use is recorded beside it. Writes
bench/results/ha-throughput-latest.json.

    python bench/ha.py --part throughput [--clients 4,16] [--seeds 1,2] [--duration 15]

`--part all` (the default) runs the throughput part, then the takeover part.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from demo_server import BIN, free_port
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from suanli.engine.lease import LIVENESS_APP
from suanli.store import models as m
from suanli.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = ROOT / "tests" / "services" / "postgres.sh"


def start_postgres() -> dict[str, str]:
    state = tempfile.mkdtemp(prefix="suanli-bench-pg.")
    os.chmod(state, 0o755)
    env = dict(os.environ, PG_STATE_DIR=state)
    out = subprocess.run([str(PG), "start"], env=env, check=True, capture_output=True, text=True,
                         timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"not reached in {timeout:.0f} s: {what}")


@dataclass
class Plane:
    home: Path
    url: str
    lease: float
    renew: float
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, SUANLI_HOME=str(self.home), SUANLI_DATABASE_URL=self.url,
                   SUANLI_LEASE_S=str(self.lease), SUANLI_LEASE_RENEW_S=str(self.renew),
                   SUANLI_SCHEDULER_INTERVAL="1", SUANLI_LOG_LEVEL="WARNING",
                   SUANLI_ENGINE_NICE="0")
        env.pop("SUANLI_TOKEN", None)
        return env

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{args[0]}-{len(self.procs)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([str(BIN / "suanli"), *args], env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def leader(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = httpx.get(f"{self.base}/api/v1/health",
                                                     timeout=2).json().get("leader")
            return found
        except (httpx.HTTPError, ValueError):
            return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(kills: int, lease: float, renew: float) -> list[dict[str, float]]:
    pg = start_postgres()
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-ha."))
    plane = Plane(home, pg["SQLALCHEMY_URL"], lease, renew)
    db = Database(plane.url)
    rounds: list[dict[str, float]] = []
    try:
        plane.spawn("serve", "--demo", "--no-engine", "--port", str(plane.port))
        wait_for(plane.up, 120, "the API replica answering")
        token = json.loads((home / "demo-credentials.json").read_text())["tenant_a"]
        api = httpx.Client(base_url=plane.base, timeout=10,
                           headers={"Authorization": f"Bearer {token}"})
        engines = {p.pid: p for p in (plane.spawn("engine"), plane.spawn("engine"))}

        def submit(name: str) -> None:
            r = api.post("/api/v1/jobs", json={"name": name, "command": ["true"],
                                               "walltime_s": 60,
                                               "resources": {"device": "cpu", "units": 1}})
            r.raise_for_status()

        def placed_under(epoch: int) -> bool:
            with db.session() as s:
                return bool(s.scalar(select(func.count()).select_from(m.Run)
                                     .where(m.Run.epoch == epoch)))

        def candidates_ready() -> bool:  # each keeper has polled at least once
            with db.session() as s:
                return (s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE "
                                      "application_name = :app"), {"app": LIVENESS_APP})
                        or 0) >= len(engines)

        for i in range(kills):
            wait_for(candidates_ready, 120, "both candidates polling")
            lead = wait_for(lambda: (ld := plane.leader()) and ld["pid"] in engines
                            and ld["expires_in_s"] > 0 and ld, 120, "a leader")
            epoch = int(lead["epoch"])
            submit(f"warm-{i}")  # the leader is placing: kill it in the middle of its work
            wait_for(lambda e=epoch: placed_under(e), 60, "a placement by the leader")
            victim = engines.pop(int(lead["pid"]))
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait()
            submit(f"after-kill-{i}")
            new = wait_for(lambda e=epoch: (ld := plane.leader()) and ld["epoch"] > e and ld,
                           120, "the next leader")
            seen = time.monotonic() - killed
            wait_for(lambda e=int(new["epoch"]): placed_under(e), 120,
                     "a placement by the next leader")
            placed = time.monotonic() - killed
            rounds.append({"leader_seen_s": round(seen, 2), "first_placement_s": round(placed, 2)})
            print(f"kill {i + 1}/{kills}: new leader after {seen:.2f} s, first placement after "
                  f"{placed:.2f} s", file=sys.stderr)
            proc = plane.spawn("engine")  # two candidates again
            engines[proc.pid] = proc
        api.close()
    finally:
        plane.stop()
        db.dispose()
        subprocess.run([str(PG), "stop"], env=pg, check=False, capture_output=True, timeout=60)
        shutil.rmtree(pg["PG_STATE_DIR"], ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=float, default=10.0, help="SUANLI_LEASE_S")
    ap.add_argument("--renew", type=float, default=2.0, help="SUANLI_LEASE_RENEW_S")
    ap.add_argument("--part", choices=("takeover", "throughput", "all"), default="all",
                    help="the takeover after kill -9, submissions with 1 vs 3 replicas, or both")
    ap.add_argument("--clients", default="4,16", help="throughput: concurrent clients, a list")
    ap.add_argument("--seeds", default="1,2", help="throughput: seeds (job mix and order)")
    ap.add_argument("--duration", type=float, default=15.0,
                    help="throughput: seconds each point submits")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: PostgreSQL is started through tests/services/postgres.sh",
              file=sys.stderr)
        return 2
    if args.part in ("throughput", "all"):
        throughput_main(args)
        if args.part == "throughput":
            return 0
    rounds = run(args.kills, args.lease, args.renew)
    table = Table(title=f"takeover after kill -9 of the leader (lease {args.lease:g} s, renew "
                        f"{args.renew:g} s, {len(rounds)} kills)")
    for col in ("measured from the kill to", "p50 s", "max s", "goal"):
        table.add_column(col, justify="left" if col.startswith("measured") else "right")
    summary: dict[str, Any] = {}
    for key, label, goal in (("leader_seen_s", "the next leader in health", ""),
                             ("first_placement_s", "its first committed placement",
                              "p50 <= 5, max <= 10")):
        values = [r[key] for r in rounds]
        p50, top = statistics.median(values), max(values)
        summary[key] = {"p50": p50, "max": top}
        table.add_row(label, f"{p50:.2f}", f"{top:.2f}", goal)
    Console(width=120).print(table)
    out = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "lease_s": args.lease,
           "renew_s": args.renew, "kills": len(rounds), "rounds": rounds, "summary": summary,
           "goal": {"first_placement_p50_s": 5, "first_placement_max_s": 10},
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ha-latest.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


# --- Second part: submissions through 1 and 3 API replicas --------------------------------------

BENCH_CENTER = {
    "slug": "bench", "name_zh": "压测中心", "name_en": "Bench center", "kind": "edge",
    "connector": "local", "connector_config": {"center": "bench"}, "emulated": True,
    "pools": [{"name": "bench", "device_kind": "cpu", "device_model": "bench-cpu",
               "units_per_node": 2, "nodes": 1, "memory_gb_per_node": 4,
               "price_fen_per_unit_hour": 1, "tflops_fp32": 0.1}],
}
REPLICAS = 3


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _proc_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


async def _load(bases: list[str], token: str, clients: int, seconds: float,
                seed: int) -> dict[str, Any]:
    """`clients` closed-loop clients submitting for `seconds`; request k of client i goes to
    replica (i + k) mod len(bases). The first second is warm-up, not counted."""
    import asyncio
    import random

    import aiohttp  # the load generator of bench/api.py (httpx's async pool tops out sooner)

    rng = random.Random(seed)
    jobs = [{"name": f"tp-{seed}-{i}", "command": ["true"],
             "walltime_s": rng.choice((60, 300, 600, 3600)),
             "resources": {"device": "cpu", "model": "bench-cpu", "units": rng.choice((1, 1, 2))}}
            for i in range(512)]
    lat: list[float] = []
    per_replica = [0] * len(bases)
    errors: dict[str, int] = {}
    sessions = [aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {token}"},
                                      connector=aiohttp.TCPConnector(limit=clients),
                                      timeout=aiohttp.ClientTimeout(total=60))
                for base in bases]
    start = time.perf_counter()
    counted_from, stop = start + 1.0, start + 1.0 + seconds

    async def client(i: int) -> None:
        k = 0
        while (t0 := time.perf_counter()) < stop:
            r_i = (i + k) % len(bases)
            job = jobs[(i * 7919 + k) % len(jobs)]
            k += 1
            try:
                async with sessions[r_i].post("/api/v1/jobs", json=job) as r:
                    await r.read()
                    key = "" if r.status == 201 else str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
            t1 = time.perf_counter()
            if t0 < counted_from or t1 > stop:
                continue
            if key:
                errors[key] = errors.get(key, 0) + 1
            else:
                lat.append(t1 - t0)
                per_replica[r_i] += 1

    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        for session in sessions:
            await session.close()
    return {"accepted": len(lat), "accepted_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(_pct(lat, 0.5) * 1000, 1), "p99_ms": round(_pct(lat, 0.99) * 1000, 1),
            "errors": errors, "per_replica": per_replica}


def throughput(clients_list: list[int], seeds: list[int], seconds: float) -> dict[str, Any]:
    import asyncio

    from demo_server import fresh_schema, postgres

    home = Path(tempfile.mkdtemp(prefix="suanli-bench-ha-tp."))
    procs: list[subprocess.Popen[bytes]] = []
    points: list[dict[str, Any]] = []
    jobs: int | None = None
    try:
        with postgres() as pg:
            url = fresh_schema(pg, "bench_ha_tp")

            def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
                (home / name).mkdir()
                env = dict(os.environ, SUANLI_HOME=str(home / name), SUANLI_DATABASE_URL=url,
                           SUANLI_SCHEDULER_INTERVAL="1", SUANLI_LOG_LEVEL="WARNING")
                env.pop("SUANLI_TOKEN", None)
                log = open(home / f"{name}.log", "ab")  # noqa: SIM115
                proc = subprocess.Popen([str(BIN / "suanli"), *args], env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
                procs.append(proc)
                return proc

            ports = [free_port() for _ in range(REPLICAS)]
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            replicas = [spawn(f"api-{i}", "serve", "--demo", "--no-engine", "--port", str(port))
                        for i, port in enumerate(ports)]

            def up(base: str) -> bool:
                try:
                    return httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            for base in bases:
                wait_for(lambda b=base: up(b), 180, f"the API replica {base} answering")
            creds = json.loads((home / "api-0" / "demo-credentials.json").read_text())
            httpx.post(f"{bases[0]}/api/v1/centers", json=BENCH_CENTER, timeout=30,
                       headers={"Authorization": f"Bearer {creds['platform_admin']}"}
                       ).raise_for_status()
            engine = spawn("engine", "engine")
            wait_for(lambda: (httpx.get(f"{bases[0]}/api/v1/health", timeout=5).json()
                              .get("leader") or {}).get("pid") == engine.pid, 120, "the engine leading")
            ours = [p.pid for p in replicas] + [engine.pid, os.getpid()]
            for seed in seeds:
                for clients in clients_list:
                    for n in ((1, REPLICAS) if seed % 2 else (REPLICAS, 1)):
                        busy0, total0 = _cpu_ticks()
                        cpu0 = [_proc_cpu_s([pid]) for pid in ours]
                        t0 = time.monotonic()
                        point = asyncio.run(_load(bases[:n], creds["tenant_a"], clients, seconds,
                                                  seed))
                        wall = time.monotonic() - t0
                        busy1, total1 = _cpu_ticks()
                        cpu1 = [_proc_cpu_s([pid]) for pid in ours]
                        used = [round((b - a) / wall, 2) for a, b in zip(cpu0, cpu1, strict=True)]
                        busy = (busy1 - busy0) / max(1, total1 - total0)
                        point.update(
                            replicas=n, clients=clients, seed=seed,
                            machine_cpu_busy=round(busy, 3),
                            cores_used={"api_replicas": round(sum(used[:REPLICAS]), 2),
                                        "engine": used[REPLICAS], "load_generator": used[-1],
                                        # PostgreSQL, the engine's runs, and whatever else runs
                                        "postgres_and_rest": round(busy * (os.cpu_count() or 1)
                                                                   - sum(used), 2)},
                            load_avg_1m=round(os.getloadavg()[0], 2))
                        points.append(point)
                        print(f"seed {seed}, {clients} clients, {n} replica(s): "
                              f"{point['accepted_per_s']}/s, p50 {point['p50_ms']} ms, "
                              f"p99 {point['p99_ms']} ms, errors {point['errors']}, machine "
                              f"busy {point['machine_cpu_busy']:.0%}", file=sys.stderr)
            db = Database(url)
            with db.session() as s:
                jobs = s.scalar(select(func.count()).select_from(m.Job))
            db.dispose()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(home, ignore_errors=True)
    return {"points": points, "jobs_in_db": jobs}


def throughput_main(args: argparse.Namespace) -> None:
    clients_list = [int(x) for x in str(args.clients).split(",") if x]
    seeds = [int(x) for x in str(args.seeds).split(",") if x]
    found = throughput(clients_list, seeds, args.duration)
    points = found["points"]
    table = Table(title=f"submissions through 1 vs {REPLICAS} API replicas on PostgreSQL "
                        f"({args.duration:g} s per point, one engine, {os.cpu_count()} cores)")
    for col in ("clients", "seed", "replicas", "accepted/s", "p50 ms", "p99 ms", "errors",
                "machine busy", "cores: api / engine / loadgen / pg+rest"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(str(p["clients"]), str(p["seed"]), str(p["replicas"]),
                      f"{p['accepted_per_s']:.1f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}",
                      str(sum(p["errors"].values())), f"{p['machine_cpu_busy']:.0%}",
                      f"{p['cores_used']['api_replicas']:.2f} / {p['cores_used']['engine']:.2f}"
                      f" / {p['cores_used']['load_generator']:.2f}"
                      f" / {p['cores_used']['postgres_and_rest']:.2f}")
    summary: dict[str, Any] = {}
    for clients in clients_list:
        by = {n: [p for p in points if p["clients"] == clients and p["replicas"] == n]
              for n in (1, REPLICAS)}
        rate = {n: statistics.median(p["accepted_per_s"] for p in v) for n, v in by.items()}
        p99 = {n: statistics.median(p["p99_ms"] for p in v) for n, v in by.items()}
        summary[str(clients)] = {
            "accepted_per_s": {str(n): r for n, r in rate.items()},
            "p99_ms": {str(n): v for n, v in p99.items()},
            "throughput_ratio": round(rate[REPLICAS] / max(1e-9, rate[1]), 2),
            "p99_ratio": round(p99[REPLICAS] / max(1e-9, p99[1]), 2)}
        table.add_row(str(clients), "median", f"{REPLICAS} / 1",
                      f"×{summary[str(clients)]['throughput_ratio']:.2f}", "",
                      f"×{summary[str(clients)]['p99_ratio']:.2f}", "", "", "")
    Console(width=140).print(table)
    out = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "database": "postgresql 15",
           "replicas": [1, REPLICAS], "clients": clients_list, "seeds": seeds,
           "seconds_per_point": args.duration, "points": points, "summary": summary,
           "jobs_in_db": found["jobs_in_db"],
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ha-throughput-latest.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
