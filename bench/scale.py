"""The engine's pass time on PostgreSQL, and the database rows one job writes (issue 17, docs/scale.md).

1. Pass time: the engine (`engine.loop.Engine`, in this process, as one leader runs it) on a fresh
   PostgreSQL schema with P pools (8 CPU units each, five pools a center) and Q queued jobs
   (1–4 units, mixed walltimes and policies, submitted through `services.jobs.submit_job`, the
   API's own path). The centers' connector is a stand-in that accepts every run and keeps it
   running until told to end it, so the pools fill and the queue stays. For each (P, Q):
   - takeover: a new engine's first pass (a new leader): reads the whole queue, ranks every
     pool for every job, commits each job's pool, places what fits;
   - full pass: every job re-planned (what the engine does after capacity changed, and at least
     every 10 s);
   - idle pass: nothing changed (reconcile only);
   - one new job: the pass after one submission;
   - churn: K runs end (the stand-in reports them completed): the pass closes, meters and bills
     them and places K more. Per ended job: its close and the placement that follows.
2. Rows per job: N jobs (`sleep 1`, billed) submitted, placed, run by the real local executor, closed,
   metered and billed on PostgreSQL; the rows of every table counted before and after (after
   one warm-up job, so one-time rows such as a tenant's first account are not counted).

PostgreSQL is started with tests/services/postgres.sh (as root) unless --database-url names one;
each measurement gets a fresh schema. Prints tables; writes bench/results/scale-latest.json.

    python bench/scale.py [--pools 10,100] [--jobs 1000,10000] [--churn 20] [--rows-jobs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from demo_server import fresh_schema, postgres
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from suanli.config import Settings
from suanli.connectors import Capability, Health, PoolCapacity, RunRequest, RunStatus, register
from suanli.domain.enums import CenterKind, DeviceKind, Policy, Role, RunState
from suanli.engine.loop import Engine
from suanli.services import jobs as jobsvc
from suanli.services.auth import Principal, create_user, principal_of
from suanli.services.centers import CenterInput, PoolInput, create_center
from suanli.services.context import Platform
from suanli.services.demo import credit_code
from suanli.services.jobs import JobInput
from suanli.services.tenants import create_tenant
from suanli.store import models as m
from suanli.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POOLS_PER_CENTER = 5


class Hold:
    """A center whose runs start at once and run until `end` is called (no processes)."""

    name = "bench-hold"
    capabilities = frozenset({Capability.CANCEL, Capability.BATCH_STATUS})
    runs: ClassVar[dict[str, RunStatus]] = {}

    def __init__(self, config: Mapping[str, Any], home: Path) -> None:
        self.center = str(config.get("center", ""))

    def submit(self, req: RunRequest) -> str:
        self.runs.setdefault(req.run_key, RunStatus(RunState.RUNNING,
                                                    started_at=datetime.now(UTC)))
        return req.run_key

    def status(self, external_id: str) -> RunStatus:
        return self.runs.get(external_id, RunStatus(RunState.LOST, reason="unknown"))

    def statuses(self, external_ids: list[str]) -> dict[str, RunStatus]:
        return {e: self.status(e) for e in external_ids}

    def cancel(self, external_id: str) -> None:
        if external_id in self.runs:
            self.runs[external_id] = RunStatus(RunState.CANCELLED, exit_code=None,
                                               started_at=self.runs[external_id].started_at,
                                               ended_at=datetime.now(UTC))

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes:
        return b""

    def capacity(self) -> list[PoolCapacity]:
        return []

    def health(self) -> Health:
        return Health(True)

    @classmethod
    def end(cls, n: int) -> int:
        """End up to n running runs (completed, exit 0): how many were ended."""
        ended = 0
        for key, st in cls.runs.items():
            if ended == n:
                break
            if st.state is RunState.RUNNING:
                cls.runs[key] = RunStatus(RunState.COMPLETED, exit_code=0,
                                          started_at=st.started_at, ended_at=datetime.now(UTC))
                ended += 1
        return ended


def platform_on(url: str, home: Path) -> Platform:
    settings = Settings(home=home, database_url=url, scheduler_interval_s=1.0,
                        log_level="WARNING")
    db = Database(url)
    db.upgrade()
    return Platform(db=db, settings=settings)


def tenant_user(p: Platform, n: int = 0) -> Principal:
    tenant = create_tenant(p, None, name=f"Bench tenant {n}",
                           credit_code=credit_code("370212", f"BENCH{n:04d}"),
                           credit_limit_fen=10**12)
    return principal_of(create_user(p, None, username=f"bench{n}", role=Role.TENANT_USER,
                                    tenant_id=tenant.id))


def add_pools(p: Platform, n_pools: int, connector: str, rng: random.Random,
              units_per_node: int = 4, nodes: int = 2, price: int | None = None) -> None:
    for c in range((n_pools + POOLS_PER_CENTER - 1) // POOLS_PER_CENTER):
        pools = [PoolInput(name=f"cpu{j}", device_kind=DeviceKind.CPU, device_model="bench-cpu",
                           units_per_node=units_per_node, nodes=nodes, memory_gb_per_node=64,
                           price_fen_per_unit_hour=price or rng.randint(5, 200),
                           tflops_fp32=rng.uniform(0.05, 0.5), watts_per_unit=rng.randint(5, 30))
                 for j in range(min(POOLS_PER_CENTER, n_pools - c * POOLS_PER_CENTER))]
        create_center(p, None, CenterInput(
            slug=f"c{c:03d}", name_zh=f"中心{c}", name_en=f"Center {c}",
            kind=CenterKind.SUPERCOMPUTING, district=f"d{c % 10}", pue=1.1 + (c % 5) / 10,
            connector=connector, connector_config={"center": f"c{c:03d}"}, pools=pools))
    p.topology_changed()


def submit(p: Platform, users: list[Principal], n: int, rng: random.Random,
           command: list[str] | None = None) -> float:
    """Submit n jobs through the API's service; returns the seconds per submission."""
    t0 = time.perf_counter()
    for i in range(n):
        jobsvc.submit_job(p, users[i % len(users)], JobInput(
            name=f"q{i}", command=command or ["true"], device=DeviceKind.CPU,
            units=rng.choice((1, 1, 2, 4)), walltime_s=rng.choice((600, 1800, 3600, 7200)),
            policy=rng.choice((Policy.BALANCED, Policy.CHEAPEST, Policy.FASTEST)),
            priority=rng.choice((0, 0, 0, 5))))
    return (time.perf_counter() - t0) / max(1, n)


def timed(engine: Engine) -> dict[str, Any]:
    t0 = time.perf_counter()
    stats = engine.tick()
    return {"seconds": round(time.perf_counter() - t0, 4), "queued": stats.queued,
            "placed": stats.placed, "finished": stats.finished, "phases": dict(stats.phases)}


def pass_times(pg: str, n_pools: int, sizes: list[int], churn: int, seed: int,
               console: Console) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-scale."))
    p = platform_on(fresh_schema(pg, "bench_scale"), home)
    out: list[dict[str, Any]] = []
    try:
        Hold.runs.clear()
        add_pools(p, n_pools, "bench-hold", rng)
        users = [tenant_user(p, i) for i in range(10)]
        have = 0
        for size in sizes:
            console.print(f"{n_pools} pools: submitting {size - have:,} jobs …")
            per_submit = submit(p, users, size - have, rng)
            have = size
            engine = Engine(p)  # a new leader: nothing in memory
            takeover = timed(engine)
            timed(engine)  # the runs it placed are seen running
            full = []
            for _ in range(3):
                engine.request_full_pass()
                full.append(timed(engine))
            idle = timed(engine)
            submit(p, users, 1, rng)
            one = timed(engine)
            ended = Hold.end(churn)
            churned = timed(engine)
            with p.db.session() as s:
                queued = s.scalar(select(func.count()).select_from(m.Job)
                                  .where(m.Job.state == "QUEUED"))
                running = s.scalar(select(func.count()).select_from(m.Run)
                                   .where(m.Run.state == "running"))
            row = {"pools": n_pools, "queued_jobs": queued, "running_runs": running,
                   "submit_ms": round(per_submit * 1000, 2),
                   "takeover_pass": takeover,
                   "full_pass": min(full, key=lambda r: r["seconds"]),
                   "full_pass_median_s": statistics.median(r["seconds"] for r in full),
                   "idle_pass": idle, "one_new_job_pass": one,
                   "churn": {"ended": ended, **churned}}
            out.append(row)
            console.print(f"  {queued:,} queued: takeover {takeover['seconds']:.2f} s "
                          f"({takeover['placed']} placed), full {row['full_pass_median_s']:.2f} s, "
                          f"idle {idle['seconds']:.3f} s, one new {one['seconds']:.3f} s, churn "
                          f"{ended} ended → {churned['placed']} placed in "
                          f"{churned['seconds']:.2f} s")
    finally:
        p.db.dispose()
        shutil.rmtree(home, ignore_errors=True)
    return out


def count_rows(p: Platform) -> dict[str, int]:
    counts: dict[str, int] = {}
    with p.db.session() as s:
        for table in m.Base.metadata.sorted_tables:
            counts[table.name] = int(s.scalar(select(func.count()).select_from(table)) or 0)
    return counts


def tuple_writes(p: Platform) -> tuple[dict[str, int], int]:
    """Rows inserted + updated + deleted so far in this schema (pg_stat_user_tables), and the
    server's WAL position in bytes. Backends report their counts when they end: the pool's
    connections are closed first, and the figures read on a fresh one a moment later."""
    p.db.dispose()
    time.sleep(1.0)
    with p.db.session() as s:
        writes = {name: int(n) for name, n in s.execute(text(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema()")).all()}
        wal = int(s.scalar(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")) or 0)
    return writes, wal


def rows_per_job(pg: str, n: int, console: Console) -> dict[str, Any]:
    """N jobs through their whole life on the local executor; rows per table per job."""
    rng = random.Random(7)
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-rows."))
    p = platform_on(fresh_schema(pg, "bench_rows"), home)
    p.settings = replace(p.settings, health_interval_s=3600)
    engine = Engine(p)

    def run_all(count: int) -> None:
        submit(p, [user], count, rng, command=["sleep", "1"])
        deadline = time.monotonic() + 60 + 5 * count
        while time.monotonic() < deadline:
            engine.tick()
            with p.db.session() as s:
                left = s.scalar(select(func.count()).select_from(m.Job).where(
                    m.Job.state.notin_(("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))))
                usage = s.scalar(select(func.count()).select_from(m.UsageRecord))
                jobs = s.scalar(select(func.count()).select_from(m.Job))
            if not left and usage == jobs:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{count} jobs not done in time")

    try:
        # ¥1,000 a unit-hour: a run of a second bills a few yuan, so it is posted to the ledger
        # as an hours-long run at a real price is (a run billed 0 fen posts nothing)
        add_pools(p, 1, "local", rng, units_per_node=4, nodes=1, price=100_000)
        user = tenant_user(p)
        run_all(1)  # warm-up: a tenant's first bill opens its accounts
        before, (w_before, wal_before) = count_rows(p), tuple_writes(p)
        console.print(f"rows per job: {n} jobs on the local executor …")
        run_all(n)
        after, (w_after, wal_after) = count_rows(p), tuple_writes(p)
        with p.db.session() as s:
            states = dict(s.execute(select(m.Job.state, func.count()).group_by(m.Job.state)).all())
    finally:
        engine.stop()
        p.db.dispose()
        shutil.rmtree(home, ignore_errors=True)
    per_table = {t: round((after[t] - before[t]) / n, 2) for t in after if after[t] != before[t]}
    writes = {t: round((w_after[t] - w_before.get(t, 0)) / n, 2) for t in w_after
              if w_after[t] != w_before.get(t, 0)}
    return {"jobs": n, "job_states": states, "rows_per_job": per_table,
            "total_rows_per_job": round(sum(per_table.values()), 2),
            # inserts + updates + deletes: a job's row is inserted once and updated at each state
            "row_writes_per_job": writes, "total_row_writes_per_job": round(sum(writes.values()), 2),
            # the engine's passes while the jobs ran included (what an idle pass writes: nothing)
            "wal_bytes_per_job": round((wal_after - wal_before) / n)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pools", default="10,100", help="pool counts, a list")
    ap.add_argument("--jobs", default="1000,10000", help="queued jobs, a rising list")
    ap.add_argument("--churn", type=int, default=20, help="runs ended before the churn pass")
    ap.add_argument("--rows-jobs", type=int, default=20, help="jobs for the rows count")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL (postgresql+psycopg://…) instead of starting one")
    args = ap.parse_args()
    register("bench-hold", Hold)
    console = Console(width=150)
    sizes = sorted(int(x) for x in args.jobs.split(",") if x)
    with postgres(args.database_url) as pg:
        passes = [row for n in (int(x) for x in args.pools.split(",") if x)
                  for row in pass_times(pg, n, sizes, args.churn, args.seed, console)]
        rows = rows_per_job(pg, args.rows_jobs, console)

    t = Table(title="engine pass time on PostgreSQL (one leader, in process)")
    for col in ("pools", "queued", "running", "takeover pass", "placed", "full pass", "idle pass",
                "+1 job pass", "churn pass", "per ended job", "submit (service)"):
        t.add_column(col, justify="right")
    for r in passes:
        ch = r["churn"]
        t.add_row(str(r["pools"]), f"{r['queued_jobs']:,}", f"{r['running_runs']:,}",
                  f"{r['takeover_pass']['seconds']:.2f} s",
                  str(r["takeover_pass"]["placed"]), f"{r['full_pass_median_s']:.2f} s",
                  f"{r['idle_pass']['seconds'] * 1000:.0f} ms",
                  f"{r['one_new_job_pass']['seconds'] * 1000:.0f} ms",
                  f"{ch['seconds']:.2f} s ({ch['ended']}→{ch['placed']})",
                  f"{ch['seconds'] / max(1, ch['ended']) * 1000:.0f} ms",
                  f"{r['submit_ms']:.1f} ms")
    console.print(t)
    rt = Table(title=f"database rows per job (whole life, {rows['jobs']} jobs, PostgreSQL)")
    rt.add_column("table")
    rt.add_column("new rows per job", justify="right")
    rt.add_column("rows written per job (ins+upd+del)", justify="right")
    for name in sorted(set(rows["rows_per_job"]) | set(rows["row_writes_per_job"]),
                       key=lambda t: -rows["row_writes_per_job"].get(t, 0)):
        rt.add_row(name, f"{rows['rows_per_job'].get(name, 0):g}",
                   f"{rows['row_writes_per_job'].get(name, 0):g}")
    rt.add_row("[bold]total[/]", f"[bold]{rows['total_rows_per_job']:g}[/]",
               f"[bold]{rows['total_row_writes_per_job']:g}[/]")
    rt.add_row("WAL bytes per job", "", f"{rows['wal_bytes_per_job']:,}")
    console.print(rt)
    out = {"benchmark": "scale", "when": datetime.now(UTC).isoformat(timespec="seconds"),
           "database": "postgresql 15", "seed": args.seed, "pools_per_center": POOLS_PER_CENTER,
           "pool_units": 8, "passes": passes, "rows": rows,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale-latest.json").write_text(json.dumps(out, indent=1, ensure_ascii=False)
                                               + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
