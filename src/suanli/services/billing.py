"""Billing: every finished run is metered, priced at its pool's price valid when the run started,
capped at what is left of its job's budget and of what admission held for the job, partly paid
by a voucher grant (point of sale: 算力券 at billing time) and posted — usage record, bill,
redemption and audit entries in one database transaction, once per run (the unique run_id of the
usage record and of the redemption, and the ledger key `bill:run:<id>`, make retries and restarts
harmless).

`bill_runs` takes a batch: the engine passes the runs it closes, the benchmark a million.
Concurrent billers serialize per tenant (its row is locked first) and per grant (locked before
its remainder is read), so a grant is never overspent and a prepaid balance never drawn twice.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..domain.enums import Precision
from ..domain.model import PoolSpec, meter
from ..domain.money import yuan
from ..ledger.entries import VoucherPart, tenant_prepaid, voucher_grant
from ..ledger.entries import bill as ledger_bill
from ..store import models as m
from ..store.bulk import among, bump, insert_rows
from ..vouchers import Rules, subsidy
from .ledger import balances_of, post_many


@dataclass(frozen=True, slots=True)
class FinishedRun:
    run_id: int
    job_id: int
    tenant_id: int
    center_id: int
    pool_id: int
    units: int
    started_at: datetime
    ended_at: datetime
    precision: Precision
    budget_fen: int | None = None
    # Bill no more than what the job still holds (its hold less its earlier bills): the engine's
    # runs, whose jobs were admitted with a hold covering their walltime and its grace.
    within_hold: bool = False


def finished_run(job: m.Job, run: m.Run, ended: datetime) -> FinishedRun:
    assert run.started_at is not None
    return FinishedRun(run.id, job.id, job.tenant_id, run.center_id, run.pool_id, run.units,
                       run.started_at, max(ended, run.started_at), Precision(job.precision),
                       job.budget_fen, within_hold=True)


@dataclass(frozen=True, slots=True)
class Billed:
    run_id: int
    amount_fen: int
    voucher_fen: int


def price_versions(s: Session, pool_ids: list[int]) -> dict[int, tuple[list[datetime], list[int]]]:
    """Each pool's price list: (valid_from ascending, price) for bisecting."""
    rows: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for cond in among(s, m.PriceList.pool_id, sorted(set(pool_ids))):
        for pool_id, valid_from, price in s.execute(
                select(m.PriceList.pool_id, m.PriceList.valid_from, m.PriceList.price_fen_per_unit_hour)
                .where(cond).order_by(m.PriceList.valid_from)):
            rows[pool_id].append((valid_from, price))
    return {k: ([a for a, _ in v], [b for _, b in v]) for k, v in rows.items()}


def price_at(versions: tuple[list[datetime], list[int]] | None, at: datetime, fallback: int) -> int:
    """The price valid at `at`: the newest version that started at or before it."""
    if not versions:
        return fallback
    i = bisect.bisect_right(versions[0], at) - 1
    return versions[1][max(i, 0)]


@dataclass
class _Grant:
    id: int
    programme_id: int
    tenant_id: int
    expires_at: datetime
    rules: Rules
    rules_version: int
    left: int


class _Vouchers:
    """The point-of-sale grants that may pay the batch's bills, locked and with their remainders."""

    def __init__(self, s: Session, tenant_ids: list[int], now: datetime) -> None:
        self.by_tenant: dict[int, list[_Grant]] = defaultdict(list)
        self.related: set[tuple[int, int]] = set()
        frozen: set[int] = set()
        grants: list[tuple[m.VoucherGrant, m.VoucherProgramme]] = []
        for cond in among(s, m.Tenant.id, tenant_ids):
            frozen |= set(s.scalars(select(m.Tenant.id).where(cond, m.Tenant.frozen_at.is_not(None))))
        for cond in among(s, m.VoucherGrant.tenant_id, tenant_ids):
            grants += s.execute(
                select(m.VoucherGrant, m.VoucherProgramme)
                .join(m.VoucherProgramme, m.VoucherProgramme.id == m.VoucherGrant.programme_id)
                .where(cond, m.VoucherGrant.state == "active",
                       m.VoucherGrant.expires_at > now, m.VoucherProgramme.mode == "point_of_sale",
                       m.VoucherProgramme.status == "open")).all()
        grants = [(g, prog) for g, prog in grants if g.tenant_id not in frozen]
        if not grants:
            return
        grant_ids = sorted(g.id for g, _ in grants)
        for cond in among(s, m.VoucherGrant.id, grant_ids):  # lock before reading what is left
            s.execute(update(m.VoucherGrant).where(cond).values(state=m.VoucherGrant.state))
        left = balances_of(s, [voucher_grant(prog.id, g.id) for g, prog in grants])
        rules = _current_rules(s, {prog.id: prog.rules_version for _, prog in grants})
        for g, prog in sorted(grants, key=lambda gp: (gp[0].expires_at, gp[0].id)):
            self.by_tenant[g.tenant_id].append(_Grant(
                g.id, prog.id, g.tenant_id, g.expires_at, rules[prog.id], prog.rules_version,
                left[voucher_grant(prog.id, g.id)]))
        for cond in among(s, m.RelatedParty.tenant_id, sorted(self.by_tenant)):
            self.related |= set(s.execute(select(m.RelatedParty.tenant_id, m.RelatedParty.center_id)
                                          .where(cond)).all())

    def part(self, run: FinishedRun, amount_fen: int, center_slug: str, domestic: bool,
             device_kind: str, peer: bool = False) -> tuple[_Grant, int, int] | None:
        """The grant that pays part of this bill, its ratio and amount (and spend it)."""
        if (run.tenant_id, run.center_id) in self.related:
            return None  # never on a center related to the tenant
        for g in self.by_tenant.get(run.tenant_id, ()):
            if g.left <= 0 or not g.rules.center_allowed(center_slug, peer=peer):
                continue
            ratio = g.rules.ratio_for(domestic=domestic, device_kind=device_kind, center=center_slug)
            # Never more than the grant's remainder; the tenant's cap bounds its grants (checked
            # when each is approved), so it bounds what they pay.
            v = subsidy(amount_fen, ratio, g.left)
            if v > 0:
                g.left -= v
                return g, ratio, v
        return None


def _current_rules(s: Session, versions: dict[int, int]) -> dict[int, Rules]:
    out: dict[int, Rules] = {}
    for programme_id, version in versions.items():
        data = s.scalar(select(m.VoucherRules.rules).where(
            m.VoucherRules.programme_id == programme_id, m.VoucherRules.version == version))
        out[programme_id] = Rules.from_dict(data or {})
    return out


def bill_runs(s: Session, runs: list[FinishedRun], now: datetime) -> list[Billed]:
    """Meter, price and post each run not billed yet, in the caller's transaction."""
    if not runs:
        return []
    tenant_ids = sorted({r.tenant_id for r in runs})
    for cond in among(s, m.Tenant.id, tenant_ids):  # lock the tenants first: one biller per tenant
        s.execute(update(m.Tenant).where(cond).values(credit_limit_fen=m.Tenant.credit_limit_fen))
    run_ids = [r.run_id for r in runs]
    done: set[int] = set()
    for cond in among(s, m.UsageRecord.run_id, run_ids):
        done |= set(s.scalars(select(m.UsageRecord.run_id).where(cond)))
    todo = [r for r in runs if r.run_id not in done]
    if not todo:
        return []
    pools = {p.id: p for cond in among(s, m.Pool.id, sorted({r.pool_id for r in todo}))
             for p in s.scalars(select(m.Pool).where(cond))}
    centers = {c.id: c for cond in among(s, m.Center.id, sorted({r.center_id for r in todo}))
               for c in s.scalars(select(m.Center).where(cond))}
    versions = price_versions(s, list(pools))
    budgeted = sorted({r.job_id for r in todo if r.budget_fen is not None})
    spent: dict[int, int] = defaultdict(int)
    for cond in among(s, m.UsageRecord.job_id, budgeted):
        spent.update(s.execute(select(m.UsageRecord.job_id, func.sum(m.UsageRecord.amount_fen))
                               .where(cond)
                               .group_by(m.UsageRecord.job_id)).all())
    holding: dict[int, int] = {}  # what each job may still be billed: what it holds
    for cond in among(s, m.Job.id, sorted({r.job_id for r in todo if r.within_hold})):
        holding.update(s.execute(select(m.Job.id, m.Job.hold_fen).where(cond)).all())
    vouchers = _Vouchers(s, sorted({r.tenant_id for r in todo}), now)
    held = balances_of(s, [tenant_prepaid(t) for t in tenant_ids])
    prepaid = {t: -held[tenant_prepaid(t)] for t in tenant_ids}
    usage: list[dict[str, Any]] = []
    redemptions: list[dict[str, Any]] = []
    entries = []
    out = []
    specs: dict[tuple[int, int], PoolSpec] = {}
    for r in todo:
        pool, center = pools[r.pool_id], centers[r.center_id]
        price = price_at(versions.get(r.pool_id), r.started_at, pool.price_fen_per_unit_hour)
        spec = specs.get((pool.id, price))
        if spec is None:
            spec = specs[(pool.id, price)] = replace(pool.spec(), price_fen_per_unit_hour=price)
        seconds = max(0, round((r.ended_at - r.started_at).total_seconds()))
        fig = meter(spec, units=r.units, seconds=seconds, precision=r.precision, pue=center.pue)
        amount = fig.amount_fen
        if r.budget_fen is not None:  # the job is stopped at its budget; never billed beyond it
            amount = min(amount, max(0, r.budget_fen - spent[r.job_id]))
            spent[r.job_id] += amount
        if r.within_hold:  # never beyond what admission held for the job, across its attempts
            amount = min(amount, max(0, holding.get(r.job_id, 0)))
            holding[r.job_id] = holding.get(r.job_id, 0) - amount
        usage.append({"run_id": r.run_id, "job_id": r.job_id, "tenant_id": r.tenant_id,
                      "center_id": r.center_id, "pool_id": r.pool_id, "units": r.units,
                      "started_at": r.started_at, "ended_at": r.ended_at,
                      "unit_seconds": fig.unit_seconds, "precision": r.precision.value,
                      "pflops_hours": fig.pflops_hours, "energy_wh": fig.energy_wh, "pue": center.pue,
                      "price_fen_per_unit_hour": price, "amount_fen": amount, "created_at": now})
        found = vouchers.part(r, amount, center.slug, pool.domestic, pool.device_kind,
                              center.connector == "suanli") if amount else None
        part = None
        if found is not None:
            g, ratio, v = found
            part = VoucherPart(g.programme_id, g.id, v)
            redemptions.append({"run_id": r.run_id, "grant_id": g.id, "programme_id": g.programme_id,
                                "tenant_id": r.tenant_id, "center_id": r.center_id, "bill_fen": amount,
                                "amount_fen": v, "ratio_bp": ratio, "rules_version": g.rules_version,
                                "at": now, "clawback_reason": ""})
        entry = ledger_bill(r.run_id, r.tenant_id, r.center_id, amount, prepaid[r.tenant_id], part)
        if entry is not None:
            entries.append(entry)
            own = amount - (part.amount_fen if part else 0)
            prepaid[r.tenant_id] -= min(own, max(0, prepaid[r.tenant_id]))
        out.append(Billed(r.run_id, amount, part.amount_fen if part else 0))
    insert_rows(s, m.UsageRecord, usage)
    _release_holds(s, usage)
    insert_rows(s, m.VoucherRedemption, redemptions)
    post_many(s, entries, now, fresh=True)  # `todo` holds only runs without a usage record
    return out


def _release_holds(s: Session, usage: list[dict[str, Any]]) -> None:
    """What a job was billed no longer needs holding against its tenant's money."""
    billed: dict[int, int] = defaultdict(int)
    for u in usage:
        if u["amount_fen"]:
            billed[u["job_id"]] += u["amount_fen"]
    released: dict[int, int] = {}
    by_tenant: dict[int, int] = defaultdict(int)
    for cond in among(s, m.Job.id, sorted(billed)):
        for job_id, tenant_id, hold in s.execute(
                select(m.Job.id, m.Job.tenant_id, m.Job.hold_fen).where(cond, m.Job.hold_fen > 0)):
            released[job_id] = min(hold, billed[job_id])
            by_tenant[tenant_id] -= released[job_id]
    bump(s, m.Job, "hold_fen", released, release=True)
    bump(s, m.Tenant, "held_fen", by_tenant)


BUDGET_STOP = "stopped at its budget"


def stop_over_budget(s: Session, now: datetime) -> list[int]:
    """Ask to stop every running job whose spending (its earlier attempts' bills and what the
    current one has run up so far) reached its budget. Returns their ids. Run it in an immediate
    session: the jobs are read and written in one serialised step (locked here, in id order)."""
    rows = s.execute(
        select(m.Job, m.Run).join(m.Run, m.Run.id == m.Job.current_run_id)
        .where(m.Job.state == "RUNNING", m.Job.budget_fen.is_not(None),
               m.Job.cancel_requested_at.is_(None), m.Run.started_at.is_not(None))
        .order_by(m.Job.id).with_for_update(of=m.Job, key_share=True)
        .execution_options(populate_existing=True)).all()
    if not rows:
        return []
    job_ids = [j.id for j, _ in rows]
    spent = dict(s.execute(select(m.UsageRecord.job_id, func.sum(m.UsageRecord.amount_fen))
                           .where(m.UsageRecord.job_id.in_(job_ids)).group_by(m.UsageRecord.job_id)).all())
    versions = price_versions(s, [r.pool_id for _, r in rows])
    pools = {p.id: p.price_fen_per_unit_hour for p in s.scalars(
        select(m.Pool).where(m.Pool.id.in_({r.pool_id for _, r in rows})))}
    stopped = []
    for job, run in rows:
        assert run.started_at is not None and job.budget_fen is not None
        price = price_at(versions.get(run.pool_id), run.started_at, pools[run.pool_id])
        seconds = max(0, round((now - run.started_at).total_seconds()))
        accrued = int(spent.get(job.id) or 0) + (run.units * seconds * price + 1800) // 3600
        if accrued >= job.budget_fen:
            job.cancel_requested_at = now
            job.state_reason = f"{BUDGET_STOP} of {yuan(job.budget_fen)}"
            stopped.append(job.id)
    return stopped
