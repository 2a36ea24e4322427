"""Billing and settlement throughput on a real PostgreSQL, with SQLite in the same run as the peer.

A month of the demo city's usage: the demo centers, 200 tenants (half of them holding a voucher
grant of the demo programme), and N finished runs spread over November on every pool. Each run
is billed by the real billing code (`services.billing.bill_runs`, batches of 2,000 as the engine
would pass them at a busy moment): metered, priced at the price valid at its start, redeemed
against the tenant's grant, posted to the ledger (bill + postings + cached balances + audit
entry), all in the batch's transaction. Then the month is settled (`services.settlement.settle`:
statements per center, invoices per tenant, the city's payment).

Targets (issue 6): ≥ 5,000 billed runs per second on PostgreSQL; settling 1,000,000 usage records
in under 60 s. Prints a table; writes bench/results/ledger-latest.json.

    python bench/ledger.py [--pg-runs 1000000] [--sqlite-runs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sqlalchemy import func, select  # noqa: E402

from suanli.config import Settings  # noqa: E402
from suanli.domain.clock import FixedClock  # noqa: E402
from suanli.domain.enums import Precision, Role  # noqa: E402
from suanli.services import audit, settlement, vouchers  # noqa: E402
from suanli.services.auth import create_user, principal_of  # noqa: E402
from suanli.services.billing import FinishedRun, bill_runs  # noqa: E402
from suanli.services.context import Platform  # noqa: E402
from suanli.services.demo import credit_code, seed_demo  # noqa: E402
from suanli.services.tenants import create_tenant  # noqa: E402
from suanli.store import models as m  # noqa: E402
from suanli.store.bulk import insert_rows  # noqa: E402
from suanli.store.db import Database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SERVICES = ROOT / "tests" / "services"
MONTH = "2026-11"
START = datetime(2026, 11, 1, tzinfo=UTC)
AFTER = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
BATCH = 2000
TENANTS = 200


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL (tests/services/postgres.sh); yields a SQLAlchemy URL."""
    script = str(SERVICES / "postgres.sh")
    subprocess.run([script, "install"], check=True, capture_output=True)
    state = tempfile.mkdtemp(prefix="bench-pg.")
    os.chmod(state, 0o755)
    env = dict(os.environ, PG_STATE_DIR=state)
    out = subprocess.run([script, "start"], env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = v.strip("'\"")
    try:
        yield env["SQLALCHEMY_URL"]
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def setup(url: str, home: Path, n: int, rng: random.Random) -> tuple[Platform, list[FinishedRun]]:
    """The demo city, 200 tenants (100 with grants), and n finished runs in November."""
    db = Database(url)
    db.upgrade()
    clock = FixedClock(datetime(2026, 10, 31, tzinfo=UTC))
    p = Platform(db=db, settings=Settings(home=home, database_url=url), clock=clock)
    seed_demo(p)
    with db.session() as s:
        admin = principal_of(s.scalars(select(m.User).where(m.User.username == "admin")).one())
        reviewer = principal_of(s.scalars(select(m.User).where(m.User.username == "reviewer")).one())
        prog = s.scalar(select(m.VoucherProgramme.id))
        pools = [(pl.id, pl.center_id, pl.units_per_node) for pl in s.scalars(select(m.Pool))]
    assert admin and reviewer and prog
    tenants = []
    for i in range(TENANTS):
        t = create_tenant(p, admin, name=f"bench enterprise {i}", district="崂山区",
                          credit_code=credit_code("370212", f"MB{i:07d}"), credit_limit_fen=10**11)
        user = principal_of(create_user(p, admin, username=f"bench{i}", role=Role.TENANT_ADMIN,
                                        tenant_id=t.id))
        tenants.append((t.id, user.user_id))
        if i % 2 == 0:
            a = vouchers.apply(p, user, prog, requested_fen=5_000_000, planned_spend_fen=50_000_000,
                               planned_use="bench")
            vouchers.review(p, reviewer, a["id"], decision="approve")
    runs: list[FinishedRun] = []
    with db.session() as s:
        job_rows, place_rows, run_rows, meta = [], [], [], []
        first_job = (s.scalar(select(func.max(m.Job.id))) or 0) + 1
        first_place = (s.scalar(select(func.max(m.Placement.id))) or 0) + 1
        first_run = (s.scalar(select(func.max(m.Run.id))) or 0) + 1
        for i in range(n):
            tenant_id, user_id = tenants[rng.randrange(TENANTS)]
            pool_id, center_id, upn = pools[rng.randrange(len(pools))]
            units = rng.choice([1, 2, 4, 8, upn])
            secs = rng.randint(60, 6 * 3600)
            start = START + timedelta(seconds=rng.randint(0, 29 * 86400 - secs))
            end = start + timedelta(seconds=secs)
            j, pl, r = first_job + i, first_place + i, first_run + i
            job_rows.append({"id": j, "tenant_id": tenant_id, "user_id": user_id, "name": "b",
                             "command": ["true"], "device_kind": "cpu", "units": units, "walltime_s": secs,
                             "state": "COMPLETED", "submitted_at": start, "updated_at": end})
            place_rows.append({"id": pl, "job_id": j, "pool_id": pool_id, "center_id": center_id,
                               "decided_at": start, "policy": "balanced", "explanation": {}})
            run_rows.append({"id": r, "job_id": j, "placement_id": pl, "center_id": center_id,
                             "pool_id": pool_id, "attempt": 1, "run_key": f"b-{r}", "state": "completed",
                             "units": units, "nodes": [0], "devices": [], "walltime_s": secs,
                             "created_at": start, "started_at": start, "ended_at": end})
            meta.append(FinishedRun(r, j, tenant_id, center_id, pool_id, units, start, end,
                                    Precision.FP32, None))
            if len(job_rows) == 20_000 or i == n - 1:
                insert_rows(s, m.Job, job_rows)
                insert_rows(s, m.Placement, place_rows)
                insert_rows(s, m.Run, run_rows)
                job_rows, place_rows, run_rows = [], [], []
        runs = meta
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as c:  # ids were given explicitly: move the sequences past them
            for table in ("jobs", "placements", "runs"):
                c.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT MAX(id) FROM {table}))")
    clock._now = AFTER
    return p, runs


def measure(label: str, url: str, n: int, seed: int, workers: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-ledger."))
    try:
        t0 = time.perf_counter()
        p, runs = setup(url, home, n, random.Random(seed))
        setup_s = time.perf_counter() - t0
        with p.db.session() as s:
            postings_before = s.scalar(select(func.count(m.LedgerPosting.id))) or 0
        # `workers` billers at once, each for its own tenants (as engine shards would be).
        shards = [[r for r in runs if r.tenant_id % workers == k] for k in range(workers)]

        def biller(part: list[FinishedRun]) -> int:
            n_v = 0
            for i in range(0, len(part), BATCH):
                with p.db.session() as s:
                    n_v += sum(1 for b in bill_runs(s, part[i:i + BATCH], p.clock.now()) if b.voucher_fen)
            return n_v

        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            vouchered = sum(pool.map(biller, shards))
        bill_s = time.perf_counter() - t0
        with p.db.session() as s:
            postings = (s.scalar(select(func.count(m.LedgerPosting.id))) or 0) - postings_before
            admin = principal_of(s.scalars(select(m.User).where(m.User.username == "admin")).one())
        t0 = time.perf_counter()
        out = settlement.settle(p, admin, MONTH)
        settle_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with p.db.session() as s:
            verdict = audit.verify(s)
        verify_s = time.perf_counter() - t0
        p.db.dispose()
        return {"backend": label, "runs": n, "workers": workers, "setup_s": round(setup_s, 1),
                "bill_s": round(bill_s, 2), "billed_runs_per_s": round(n / bill_s),
                "postings_per_s": round(postings / bill_s), "runs_with_voucher": vouchered,
                "settle_s": round(settle_s, 2), "statements": len(out["items"]),
                "gross_fen": out["totals"]["gross_fen"], "voucher_fen": out["totals"]["voucher_fen"],
                "audit_verify_s": round(verify_s, 1), "audit_ok": verdict.ok,
                "audit_entries": verdict.entries}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-runs", type=int, default=1_000_000)
    ap.add_argument("--sqlite-runs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="concurrent billers on PostgreSQL")
    args = ap.parse_args()
    console = Console(width=150)
    results = []
    with postgres() as pg_url:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        import psycopg

        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        console.print(f"PostgreSQL: billing {args.pg_runs:,} runs …")
        results.append(measure("postgresql", f"{pg_url}?options=-csearch_path%3D{schema}",
                               args.pg_runs, args.seed, args.workers))
    sqlite_home = Path(tempfile.mkdtemp(prefix="bench-sqlite."))
    try:
        console.print(f"SQLite: billing {args.sqlite_runs:,} runs …")
        results.append(measure("sqlite", f"sqlite:///{sqlite_home / 'b.db'}", args.sqlite_runs, args.seed, 1))
    finally:
        shutil.rmtree(sqlite_home, ignore_errors=True)
    t = Table(title="billing and settlement (issue 6 targets: ≥ 5,000 billed runs/s on PostgreSQL; "
              "1M records settled < 60 s)")
    for col in ("backend", "runs", "billers", "billed runs/s", "postings/s", "with voucher", "settle s",
                "statements", "audit verify s", "audit ok"):
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(r["backend"], f"{r['runs']:,}", str(r["workers"]), f"{r['billed_runs_per_s']:,}",
                  f"{r['postings_per_s']:,}",
                  f"{r['runs_with_voucher']:,}", f"{r['settle_s']}", str(r["statements"]),
                  f"{r['audit_verify_s']}", str(r["audit_ok"]))
    console.print(t)
    pg, lite = results
    summary = {"results": results,
               "pg_vs_sqlite_billing_ratio": round(pg["billed_runs_per_s"] / lite["billed_runs_per_s"], 2),
               "targets": {"billed_runs_per_s_pg": 5000, "settle_1m_s": 60},
               "billing_target_met": pg["billed_runs_per_s"] >= 5000,
               "settlement_target_met": pg["settle_s"] < 60 and pg["runs"] >= 1_000_000}
    console.print(f"PostgreSQL / SQLite billing throughput: {summary['pg_vs_sqlite_billing_ratio']}×")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ledger-latest.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
