"""Hypothesis drives the real services through any sequence of grants, runs (billed, retried,
failed over), redemptions, claims, expiries, clawbacks and freezes, and checks after every step
that the invariants hold: the ledger sums to zero, cached balances equal postings, the pool is
never over-committed (budget = available + committed + paid, none negative), no grant below
zero, no tenant above its cap, no run billed or subsidised twice, no subsidy above its ratio."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from suanli.config import Settings
from suanli.domain.enums import DeviceKind
from suanli.domain.errors import PaymentRequired, SuanliError
from suanli.services import jobs as jobsvc
from suanli.services import vouchers
from suanli.services.billing import FinishedRun
from suanli.services.context import Platform
from suanli.services.jobs import JobInput
from suanli.services.ledger import balances
from suanli.store import models as m
from suanli.store.db import Database

from ..money import bill, finished_run, fixed_world

CAP = 30_000


class VoucherYear(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="suanli-prop."))
        settings_ = Settings(home=self.home, database_url=f"sqlite:///{self.home / 'p.db'}")
        self.db = Database(settings_.database_url)
        self.db.upgrade()
        self.w, self.clock = fixed_world(Platform(db=self.db, settings=settings_))
        self.runs: list[FinishedRun] = []
        self.queued: list[int] = []
        self.prog = 0

    @initialize(mode=st.sampled_from(["point_of_sale", "post_hoc"]),
                budget=st.integers(1_000, 60_000))
    def programme(self, mode: str, budget: int) -> None:
        w = self.w
        self.prog = vouchers.create_programme(
            w.p, w.admin, name="p", year=2026, budget_fen=budget, mode=mode,
            rules={"tenant_cap_fen": CAP, "overrides": [{"domestic": True, "ratio_bp": 3000}]})["id"]

    @rule(ask=st.integers(1, 8_000), part=st.floats(0.01, 1.0))
    def grant(self, ask: int, part: float) -> None:
        w = self.w
        try:
            a = vouchers.apply(w.p, w.u2, self.prog, requested_fen=ask, planned_spend_fen=10**7,
                               planned_use="x")
            amount = max(1, int(ask * part))
            vouchers.review(w.p, w.reviewer, a["id"], decision="approve", approved_fen=amount,
                            reason="" if amount == ask else "part")
        except SuanliError:
            pass  # over the cap, the pool, frozen, a pending one: refused, and nothing changes

    @rule(tenant=st.sampled_from([2, 2, 1]), pool=st.sampled_from(["cpu", "npu", "beta"]),
          seconds=st.integers(0, 40_000), budget=st.one_of(st.none(), st.integers(0, 5_000)))
    def run(self, tenant: int, pool: str, seconds: int, budget: int | None) -> None:
        w = self.w
        center, name = (w.beta, "cpu") if pool == "beta" else (w.alpha, pool)
        tid = w.t1.id if tenant == 1 else w.t2.id
        r = finished_run(w, tid, center, name, seconds=seconds, budget_fen=budget)
        self.runs.append(r)
        bill(w, r)

    @rule(data=st.data())
    def failover(self, data: st.DataObject) -> None:
        """A second attempt of a job whose first run was lost: billed for what each consumed."""
        if not self.runs:
            return
        first = data.draw(st.sampled_from(self.runs))
        center = self.w.alpha if first.center_id == self.w.alpha.id else self.w.beta
        pool = next(p.name for p in center.pools if p.id == first.pool_id)
        again = finished_run(self.w, first.tenant_id, center, pool, seconds=600,
                             budget_fen=first.budget_fen, job_id=first.job_id)
        self.runs.append(again)
        bill(self.w, again)

    @rule(tenant=st.sampled_from([1, 2]), units=st.integers(1, 4), walltime=st.integers(600, 3600))
    def submit(self, tenant: int, units: int, walltime: int) -> None:
        """Admission holds the job's estimate, or refuses it (402) and holds nothing."""
        w = self.w
        try:
            job = jobsvc.submit_job(w.p, w.u1 if tenant == 1 else w.u2, JobInput(
                name="q", command=["true"], device=DeviceKind.NPU, units=units, walltime_s=walltime))
            self.queued.append(job.id)
        except PaymentRequired:
            pass

    @rule(data=st.data(), seconds=st.integers(60, 20_000), cancel=st.booleans())
    def queued_job_runs_or_ends(self, data: st.DataObject, seconds: int, cancel: bool) -> None:
        """A submitted job is billed for a run (lowering its hold), or cancelled (freeing it)."""
        if not self.queued:
            return
        job_id = data.draw(st.sampled_from(self.queued))
        w = self.w
        if cancel:
            jobsvc.cancel_job(w.p, w.admin, job_id)
            self.queued.remove(job_id)
            return
        with w.p.db.session() as s:
            tenant_id = s.get(m.Job, job_id).tenant_id  # type: ignore[union-attr]
        r = finished_run(w, tenant_id, w.alpha, "npu", seconds=seconds, job_id=job_id)
        self.runs.append(r)
        bill(w, r)

    @rule(data=st.data())
    def retry_billing(self, data: st.DataObject) -> None:
        if self.runs:
            assert bill(self.w, data.draw(st.sampled_from(self.runs))) == []

    @rule(days=st.integers(1, 200))
    def time_passes(self, days: int) -> None:
        self.clock.advance(days * 86400)
        vouchers.expire_grants(self.w.p)

    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        w = self.w
        grants = vouchers.list_grants(w.p, w.admin)
        if not grants:
            return
        g = data.draw(st.sampled_from(grants))
        month = data.draw(st.sampled_from(["2026-03", "2026-04", "2026-05", "2026-06"]))
        try:
            vouchers.claim(w.p, w.u2, g["id"], month)
        except SuanliError:
            pass

    @rule(data=st.data())
    def clawback(self, data: st.DataObject) -> None:
        w = self.w
        items = vouchers.list_redemptions(w.p, w.admin, limit=1000)["items"]
        if items:
            r = data.draw(st.sampled_from(items))
            try:
                vouchers.clawback(w.p, w.auditor, r["id"], "improper")  # type: ignore[attr-defined]
            except SuanliError:
                assert r["clawed_back_at"] is not None

    @rule(frozen=st.booleans())
    def freeze(self, frozen: bool) -> None:
        vouchers.freeze(self.w.p, self.w.auditor, self.w.t2.id, "check", frozen=frozen)  # type: ignore[attr-defined]

    @invariant()
    def books_balance_and_caches_match(self) -> None:
        if not self.prog:
            return
        with self.db.session() as s:
            truth = balances(s)
            cached = dict(s.execute(select(m.LedgerAccount.code, m.LedgerAccount.balance_fen)).all())
            f = vouchers.pool_figures(s, self.prog)
            grants = [v for k, v in truth.items() if ":grant:" in k]
            per_run = s.execute(select(func.count(m.UsageRecord.id)).group_by(m.UsageRecord.run_id)).all()
            bills = s.scalar(select(func.count(m.LedgerTransaction.id))
                             .where(m.LedgerTransaction.kind == "bill")) or 0
            billed_runs = s.scalar(select(func.count(m.UsageRecord.id)).where(m.UsageRecord.amount_fen > 0))
            r = m.VoucherRedemption
            over_ratio = s.scalar(select(func.count(r.id))
                                  .where(r.amount_fen * 10_000 > r.bill_fen * r.ratio_bp))
            per_tenant = s.execute(select(func.sum(m.VoucherRedemption.amount_fen))
                                   .where(m.VoucherRedemption.clawed_back_at.is_(None))
                                   .group_by(m.VoucherRedemption.tenant_id)).scalars().all()
            held = dict(s.execute(select(m.Tenant.id, m.Tenant.held_fen)).all())
            unfinished = dict(s.execute(select(m.Job.tenant_id, func.sum(m.Job.hold_fen))
                                        .where(m.Job.state.in_(["QUEUED", "PLACED", "RUNNING"]))
                                        .group_by(m.Job.tenant_id)).all())
            budgets = s.execute(select(m.Job.id, m.Job.budget_fen, func.sum(m.UsageRecord.amount_fen))
                                .join(m.UsageRecord, m.UsageRecord.job_id == m.Job.id)
                                .where(m.Job.budget_fen.is_not(None)).group_by(m.Job.id)).all()
        assert sum(truth.values()) == 0
        assert cached == truth
        assert f["budget_fen"] == f["available_fen"] + f["committed_fen"] + f["paid_fen"]
        assert f["available_fen"] >= 0 and all(g >= 0 for g in grants) and f["paid_fen"] >= 0
        assert all(n == 1 for (n,) in per_run)
        assert bills == billed_runs  # one bill per run that cost something, never two
        assert over_ratio == 0
        assert all(total <= CAP for total in per_tenant)
        assert all(spent <= cap for _, cap, spent in budgets)
        assert all(held[t] == int(unfinished.get(t) or 0) for t in held)  # holds add up

    def teardown(self) -> None:
        self.db.dispose()
        shutil.rmtree(self.home, ignore_errors=True)


VoucherYear.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_voucher_year_invariants = VoucherYear.TestCase

