"""Concurrency on a real PostgreSQL (and the same suite on SQLite): 50 bills racing to redeem one
nearly exhausted grant, and 50 approvals racing to commit one nearly exhausted pool, never
overspend by one fen. Migrations run on both databases."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from suanli.config import Settings
from suanli.domain.enums import Role
from suanli.domain.errors import Conflict
from suanli.services import vouchers
from suanli.services.auth import create_user, principal_of
from suanli.services.context import Platform
from suanli.services.demo import credit_code
from suanli.services.ledger import balance, balances
from suanli.services.tenants import create_tenant
from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import World, database_url
from ..money import bill, finished_run, fixed_world

pytestmark = pytest.mark.integration
N = 50


@pytest.fixture(params=["sqlite", "postgresql"])
def money_world(request: pytest.FixtureRequest) -> Iterator[World]:
    home = Path(tempfile.mkdtemp(prefix="suanli-conc."))
    url = database_url(request, home, "conc")
    db = Database(url)
    db.upgrade()
    w, _ = fixed_world(Platform(db=db, settings=Settings(home=home, database_url=url)))
    yield w
    db.dispose()
    shutil.rmtree(home, ignore_errors=True)


def test_concurrent_redemptions_never_overspend_a_grant(money_world: World) -> None:
    w = money_world
    prog = vouchers.create_programme(w.p, w.admin, name="c", year=2026, budget_fen=100_000)["id"]
    a = vouchers.apply(w.p, w.u2, prog, requested_fen=1_000, planned_spend_fen=10**6, planned_use="x")
    grant = vouchers.review(w.p, w.reviewer, a["id"], decision="approve")["grant_id"]
    # Each run's bill is 480 fen (4 units × 100 fen × 1.2 h): 96 fen of subsidy each, 4,800 asked.
    runs = [finished_run(w, w.t2.id, w.alpha, "cpu", seconds=4320) for _ in range(N)]
    with ThreadPoolExecutor(N) as pool:
        billed = [b for out in pool.map(lambda r: bill(w, r), runs) for b in out]
    assert len(billed) == N and all(b.amount_fen == 480 for b in billed)
    assert sum(b.voucher_fen for b in billed) == 1_000  # exactly the grant, not one fen more
    with w.p.db.session() as s:
        assert balance(s, f"voucher:{prog}:grant:{grant}") == 0
        assert s.scalar(select(func.sum(m.VoucherRedemption.amount_fen))) == 1_000
        assert sum(balances(s).values()) == 0
        tenant_paid = balance(s, f"tenant:{w.t2.id}:receivable")
    assert tenant_paid == N * 480 - 1_000


def test_concurrent_approvals_never_over_commit_the_pool(money_world: World) -> None:
    w = money_world
    prog = vouchers.create_programme(w.p, w.admin, name="c", year=2026, budget_fen=1_000)["id"]
    apps = []
    for i in range(N):  # 50 tenants, each asking for 100 fen: the pool holds 10 of them
        t = create_tenant(w.p, None, name=f"企业 {i}", credit_code=credit_code("370212", f"MA{i:07d}"))
        admin = principal_of(create_user(w.p, None, username=f"a{i}", role=Role.TENANT_ADMIN, tenant_id=t.id))
        apps.append(vouchers.apply(w.p, admin, prog, requested_fen=100, planned_spend_fen=10_000,
                                   planned_use="x")["id"])

    def approve(app_id: int) -> bool:
        try:
            vouchers.review(w.p, w.reviewer, app_id, decision="approve")
            return True
        except Conflict:
            return False

    with ThreadPoolExecutor(N) as pool:
        done = list(pool.map(approve, apps))
    assert sum(done) == 10
    with w.p.db.session() as s:
        f = vouchers.pool_figures(s, prog)
        granted = s.scalar(select(func.sum(m.VoucherGrant.amount_fen)))
    assert (f["available_fen"], f["committed_fen"], granted) == (0, 1_000, 1_000)


def test_bulk_insert_and_among_round_trip_awkward_values(money_world: World) -> None:
    """COPY's text format is built by suanli on PostgreSQL: tabs, line ends, backslashes, CJK,
    quotes, NULLs and JSON come back exactly; `among` finds 1,200 keys (ANY on PostgreSQL,
    chunked IN lists on SQLite)."""
    from datetime import UTC, datetime

    from suanli.store.bulk import among, insert_rows

    at = datetime(2026, 11, 23, 8, 30, 15, 123456, tzinfo=UTC)
    memos = ["tab\there", "line\nend\r\n", "back\\slash \\N", "算力券 “引号” 'q'", "", "\\t literal"]
    rows = [{"kind": "test", "key": f"bulk:{i}", "at": at, "memo": memos[i % len(memos)],
             "refs": {"i": i, "text": memos[i % len(memos)], "nested": [1, None, "x"]},
             "reverses_id": None} for i in range(1200)]
    with money_world.p.db.session() as s:
        insert_rows(s, m.LedgerTransaction, rows)
    keys = [r["key"] for r in rows]
    with money_world.p.db.session() as s:
        got = {t.key: t for cond in among(s, m.LedgerTransaction.key, keys)
               for t in s.scalars(select(m.LedgerTransaction).where(cond))}
    assert len(got) == 1200
    for r in rows:
        t = got[r["key"]]
        assert (t.memo, t.refs, t.at, t.reverses_id) == (r["memo"], r["refs"], at, None)
