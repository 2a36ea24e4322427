"""The ledger in the database, and billing from the engine with real processes (issue 6, first step)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from suanli.domain.enums import DeviceKind
from suanli.domain.errors import Conflict, Forbidden
from suanli.ledger import Entry, Posting
from suanli.services import jobs as jobsvc
from suanli.services.jobs import JobInput
from suanli.services.ledger import balance, balances, post, reverse, trial_balance
from suanli.store import models as m

from ..conftest import World


def entry(key: str, amount: int) -> Entry:
    return Entry("test", key, (Posting("tenant:1:receivable", amount), Posting("center:1:payable", -amount)))


def test_post_is_idempotent_by_key_and_corrections_are_reversals(world: World) -> None:
    now = world.p.clock.now()
    with world.p.db.session() as s:
        a = post(s, entry("t:1", 500), now)
        assert post(s, entry("t:1", 500), now) == a  # a retry posts nothing new
        with pytest.raises(Conflict, match="posted with other amounts"):
            post(s, entry("t:1", 501), now)
        post(s, entry("t:2", 250), now)
        assert balance(s, "tenant:1:receivable") == 750 and balance(s, "center:1:payable") == -750
        r = reverse(s, a, "t:1:reversed", now)
        assert reverse(s, a, "t:1:reversed", now) == r
        assert balance(s, "tenant:1:receivable") == 250
        assert sum(balances(s).values()) == 0
        assert s.scalar(select(func.count(m.LedgerTransaction.id))) == 3


def test_every_finished_run_is_billed_once_and_the_books_balance(world: World) -> None:
    # NPUs at 800 fen per unit-hour: 4 units for ~2 s is a bill of a few fen
    jobs = [jobsvc.submit_job(world.p, world.u1, JobInput(name=f"j{i}", command=["sh", "-c", "sleep 2"],
                                                          device=DeviceKind.NPU, units=4, walltime_s=60))
            for i in range(3)]
    world.drive(lambda: all(world.job(j.id).state == "COMPLETED" for j in jobs))
    for _ in range(3):
        world.engine.tick()  # more passes bill nothing more
    with world.p.db.session() as s:
        usage = list(s.scalars(select(m.UsageRecord)))
        bills = list(s.scalars(select(m.LedgerTransaction).where(m.LedgerTransaction.kind == "bill")))
        assert len(usage) == 3 and len(bills) == 3
        assert sorted(b.refs["run_id"] for b in bills) == sorted(u.run_id for u in usage)
        owed = balance(s, f"tenant:{world.t1.id}:receivable")
        assert owed == sum(u.amount_fen for u in usage) > 0
    tb = trial_balance(world.p, world.admin)
    assert tb["total_fen"] == 0 and tb["transactions"] == 3
    assert {a["account"] for a in tb["accounts"]} >= {f"tenant:{world.t1.id}:receivable"}
    with pytest.raises(Forbidden):
        trial_balance(world.p, world.u1)


def test_bills_draw_on_prepaid_money_then_are_owed(world: World) -> None:
    from suanli.domain.errors import InvalidInput, NotFound
    from suanli.services.ledger import record_deposit, tenant_account

    acct = record_deposit(world.p, world.admin, world.t1.id, 3, "bank-001")
    assert (acct["prepaid_fen"], acct["owed_fen"], acct["deposited_fen"]) == (3, 0, 3)
    # the same reference again records nothing more; another amount under it is refused
    assert record_deposit(world.p, world.admin, world.t1.id, 3, "bank-001")["deposited_fen"] == 3
    with pytest.raises(Conflict):
        record_deposit(world.p, world.admin, world.t1.id, 4, "bank-001")
    with pytest.raises(InvalidInput, match="positive number of fen"):
        record_deposit(world.p, world.admin, world.t1.id, 0, "bank-002")
    with pytest.raises(Forbidden):
        record_deposit(world.p, world.u1, world.t1.id, 100, "bank-003")
    with pytest.raises(NotFound):
        tenant_account(world.p, world.u2, world.t1.id)  # another tenant's money is not visible
    jobs = [jobsvc.submit_job(world.p, world.u1, JobInput(name=f"n{i}", command=["sh", "-c", "sleep 2"],
                                                          device=DeviceKind.NPU, units=4, walltime_s=60))
            for i in range(2)]
    world.drive(lambda: all(world.job(j.id).state == "COMPLETED" for j in jobs))
    with world.p.db.session() as s:
        billed = sum(u.amount_fen for u in s.scalars(select(m.UsageRecord)))
    acct = tenant_account(world.p, world.u1, world.t1.id)
    assert billed > 3 and acct["billed_fen"] == billed
    assert acct["prepaid_fen"] == 0 and acct["owed_fen"] == billed - 3  # 3 fen prepaid, the rest owed
    assert trial_balance(world.p, world.admin)["total_fen"] == 0
