"""The compute-voucher programme (算力券), end to end: a programme with its pool and versioned
rules → a tenant applies → a reviewer approves, partly approves or rejects → the grant is committed
from the pool (never over-committed) → bills redeem it at billing time (point of sale, in
`billing.py`) or the tenant claims a subsidy on a period's paid fees (post hoc, 奖补) → grants
expire and their rest returns to the pool → an auditor claws back an improper redemption and
freezes a tenant. Every step is a ledger entry and/or an audit entry.

Concurrency: a grant locks its programme's row before it reads what is available; a claim locks
its grant. The lock is an UPDATE, the first statement of the transaction: a row lock on
PostgreSQL, the write lock on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from ..domain.money import yuan
from ..ledger import entries as le
from ..store import models as m
from ..vouchers import MODES, Rules, RulesError, period_bounds, period_of, subsidy
from ..vouchers.rules import DEFAULT_BUDGET_FEN
from . import audit
from .auth import Principal, hide_other_tenant
from .context import Platform
from .ledger import balance, balances_of, lock_tenant, post

MAX_BUDGET_FEN = 10**13  # a hundred billion yuan
DECISIONS = ("approve", "reject")


# -- programmes -----------------------------------------------------------------------------------

def programme_row(s: Session, programme_id: int) -> m.VoucherProgramme:
    prog = s.get(m.VoucherProgramme, programme_id)
    if prog is None:
        raise NotFound(f"no voucher programme {programme_id}")
    return prog


def rules_of(s: Session, prog: m.VoucherProgramme) -> Rules:
    data = s.scalar(select(m.VoucherRules.rules).where(m.VoucherRules.programme_id == prog.id,
                                                       m.VoucherRules.version == prog.rules_version))
    return Rules.from_dict(data or {})


def _parse_rules(data: dict[str, Any] | None) -> Rules:
    try:
        return Rules.from_dict(data or {})
    except RulesError as exc:
        raise InvalidInput(str(exc), field="rules") from exc


def pool_figures(s: Session, programme_id: int) -> dict[str, int]:
    """The pool: budget = available + committed (grants' unspent parts) + paid."""
    budget = -balance(s, le.voucher_budget(programme_id))
    available = balance(s, le.voucher_available(programme_id))
    paid = balance(s, le.voucher_paid(programme_id))
    committed = int(s.scalar(select(func.coalesce(func.sum(m.LedgerAccount.balance_fen), 0))
                             .where(m.LedgerAccount.code.like(f"voucher:{programme_id}:grant:%"))) or 0)
    return {"budget_fen": budget, "available_fen": available, "committed_fen": committed,
            "paid_fen": paid}


def programme_view(s: Session, prog: m.VoucherProgramme) -> dict[str, Any]:
    versions = [{"version": r.version, "rules": r.rules, "created_at": r.created_at}
                for r in s.scalars(select(m.VoucherRules).where(m.VoucherRules.programme_id == prog.id)
                                   .order_by(m.VoucherRules.version))]
    return {"id": prog.id, "name": prog.name, "year": prog.year, "mode": prog.mode,
            "status": prog.status, "starts_at": prog.starts_at, "ends_at": prog.ends_at,
            "rules_version": prog.rules_version, "rules": rules_of(s, prog).to_dict(),
            "rules_history": versions, **pool_figures(s, prog.id),
            "grants": int(s.scalar(select(func.count(m.VoucherGrant.id))
                                   .where(m.VoucherGrant.programme_id == prog.id)) or 0),
            "created_at": prog.created_at}


def create_programme(p: Platform, actor: Principal, *, name: str, year: int,
                     budget_fen: int = DEFAULT_BUDGET_FEN, mode: str = "point_of_sale",
                     rules: dict[str, Any] | None = None, starts_at: datetime | None = None,
                     ends_at: datetime | None = None) -> dict[str, Any]:
    """Open a year's programme (platform admin): its pool is funded at once."""
    actor.require(Role.PLATFORM_ADMIN)
    name = name.strip()
    if not 0 < len(name) <= 200:
        raise InvalidInput("a programme's name is 1-200 characters", field="name")
    if not 2000 <= year <= 2999:
        raise InvalidInput("year is 2000-2999", field="year")
    if type(budget_fen) is not int or not 0 < budget_fen <= MAX_BUDGET_FEN:
        raise InvalidInput(f"budget_fen is 1 to {MAX_BUDGET_FEN}", field="budget_fen")
    if mode not in MODES:
        raise InvalidInput(f"mode is one of {', '.join(MODES)}", field="mode")
    parsed = _parse_rules(rules)
    starts_at = starts_at or datetime(year, 1, 1, tzinfo=UTC)
    ends_at = ends_at or datetime(year + 1, 1, 1, tzinfo=UTC)
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("starts_at and ends_at need a time zone", field="starts_at")
    if ends_at <= starts_at:
        raise InvalidInput("ends_at is after starts_at", field="ends_at")
    if not (starts_at.year >= 2000 and ends_at.year < 3000):
        raise InvalidInput("a programme runs between the years 2000 and 2999", field="ends_at")
    now = p.clock.now()
    with p.db.session() as s:
        if s.scalar(select(m.VoucherProgramme.id).where(m.VoucherProgramme.name == name)) is not None:
            raise Conflict(f"a voucher programme named {name!r} exists", field="name")
        prog = m.VoucherProgramme(name=name, year=year, budget_fen=budget_fen, mode=mode,
                                  starts_at=starts_at, ends_at=ends_at, rules_version=1,
                                  status="open", created_at=now)
        s.add(prog)
        s.flush()
        s.add(m.VoucherRules(programme_id=prog.id, version=1, rules=parsed.to_dict(), created_at=now,
                             created_by=actor.user_id))
        audit.record(s, "voucher.programme", f"programme:{prog.id}",
                     {"name": name, "year": year, "budget_fen": budget_fen, "mode": mode,
                      "rules": parsed.to_dict()}, now, actor)
        post(s, le.fund_programme(prog.id, budget_fen), now, actor=actor)
        s.flush()
        return programme_view(s, prog)


def update_rules(p: Platform, actor: Principal, programme_id: int, rules: dict[str, Any]) -> dict[str, Any]:
    """A new version of the rules (platform admin); what was redeemed keeps its version."""
    actor.require(Role.PLATFORM_ADMIN)
    parsed = _parse_rules(rules)
    now = p.clock.now()
    with p.db.session() as s:
        s.execute(update(m.VoucherProgramme).where(m.VoucherProgramme.id == programme_id)
                  .values(rules_version=m.VoucherProgramme.rules_version + 1))
        prog = programme_row(s, programme_id)
        s.refresh(prog)
        s.add(m.VoucherRules(programme_id=prog.id, version=prog.rules_version, rules=parsed.to_dict(),
                             created_at=now, created_by=actor.user_id))
        audit.record(s, "voucher.rules", f"programme:{prog.id}",
                     {"version": prog.rules_version, "rules": parsed.to_dict()}, now, actor)
        s.flush()
        return programme_view(s, prog)


def list_programmes(p: Platform, actor: Principal) -> list[dict[str, Any]]:
    """Every programme with its rules (any signed-in user: the rules are public)."""
    with p.db.session() as s:
        return [programme_view(s, prog) for prog in
                s.scalars(select(m.VoucherProgramme).order_by(m.VoucherProgramme.id))]


def get_programme(p: Platform, actor: Principal, programme_id: int) -> dict[str, Any]:
    with p.db.session() as s:
        return programme_view(s, programme_row(s, programme_id))


# -- applications and review ----------------------------------------------------------------------

def _application_view(a: m.VoucherApplication, grant_id: int | None = None) -> dict[str, Any]:
    return {"id": a.id, "programme_id": a.programme_id, "tenant_id": a.tenant_id,
            "requested_fen": a.requested_fen, "planned_spend_fen": a.planned_spend_fen,
            "planned_use": a.planned_use, "state": a.state, "approved_fen": a.approved_fen,
            "reason": a.reason, "reviewed_at": a.reviewed_at, "created_at": a.created_at,
            "grant_id": grant_id}


def _granted_total(s: Session, programme_id: int, tenant_id: int) -> int:
    return int(s.scalar(select(func.coalesce(func.sum(m.VoucherGrant.amount_fen), 0)).where(
        m.VoucherGrant.programme_id == programme_id, m.VoucherGrant.tenant_id == tenant_id)) or 0)


def apply(p: Platform, actor: Principal, programme_id: int, *, requested_fen: int,
          planned_spend_fen: int, planned_use: str) -> dict[str, Any]:
    """A tenant asks for vouchers, with its planned use and spend (tenant admin)."""
    actor.require(Role.TENANT_ADMIN)
    assert actor.tenant_id is not None
    planned_use = planned_use.strip()
    if not 0 < len(planned_use) <= 2000:
        raise InvalidInput("describe the planned use in 1-2000 characters", field="planned_use")
    for field, v in (("requested_fen", requested_fen), ("planned_spend_fen", planned_spend_fen)):
        if type(v) is not int or not 0 < v <= MAX_BUDGET_FEN:
            raise InvalidInput(f"{field} is 1 to {MAX_BUDGET_FEN} fen", field=field)
    now = p.clock.now()
    with p.db.session() as s:
        lock_tenant(s, actor.tenant_id)
        prog = programme_row(s, programme_id)
        tenant = s.get(m.Tenant, actor.tenant_id)
        assert tenant is not None
        rules = rules_of(s, prog)
        if prog.status != "open" or not prog.starts_at <= now < prog.ends_at:
            raise Conflict(f"programme {prog.name} is not open for applications "
                           f"({prog.starts_at:%Y-%m-%d} to {prog.ends_at:%Y-%m-%d})")
        if tenant.frozen_at is not None:
            raise Forbidden(f"tenant {tenant.id} is frozen: {tenant.frozen_reason}")
        why = rules.tenant_ineligible(district=tenant.district, credit_code=tenant.credit_code)
        if why:
            raise InvalidInput(f"tenant {tenant.name} is not eligible: {why}", field="programme_id")
        if planned_spend_fen < rules.min_spend_fen:
            raise InvalidInput(f"the programme needs a planned spend of at least {yuan(rules.min_spend_fen)}",
                               field="planned_spend_fen")
        best = max([rules.ratio_bp, *(o.ratio_bp for o in rules.overrides)])
        most = subsidy(planned_spend_fen, best)
        if requested_fen > most:
            raise InvalidInput(f"at most {yuan(most)} can be asked for on a planned spend of "
                               f"{yuan(planned_spend_fen)} (ratio up to {best / 100:g} %)",
                               field="requested_fen")
        cap_left = rules.tenant_cap_fen - _granted_total(s, prog.id, tenant.id)
        if requested_fen > cap_left:
            raise InvalidInput(f"the tenant cap leaves {yuan(max(0, cap_left))} in this programme "
                               f"(cap {yuan(rules.tenant_cap_fen)})", field="requested_fen")
        pending = s.scalar(select(m.VoucherApplication.id).where(
            m.VoucherApplication.programme_id == prog.id, m.VoucherApplication.tenant_id == tenant.id,
            m.VoucherApplication.state == "pending"))
        if pending is not None:
            raise Conflict(f"application {pending} of this tenant is still pending review")
        a = m.VoucherApplication(programme_id=prog.id, tenant_id=tenant.id, user_id=actor.user_id,
                                 requested_fen=requested_fen, planned_spend_fen=planned_spend_fen,
                                 planned_use=planned_use, state="pending", approved_fen=0, reason="",
                                 created_at=now)
        s.add(a)
        s.flush()
        audit.record(s, "voucher.apply", f"application:{a.id}",
                     {"programme_id": prog.id, "tenant_id": tenant.id, "requested_fen": requested_fen,
                      "planned_spend_fen": planned_spend_fen}, now, actor)
        return _application_view(a)


def _visible_tenant(actor: Principal, tenant_id: int | None) -> int | None:
    """The tenant whose vouchers the actor may see (None: every tenant, for the platform's roles)."""
    if actor.role.is_tenant:
        if tenant_id is not None:
            hide_other_tenant(actor, tenant_id)
        return actor.tenant_id
    if not actor.role.is_platform:
        raise Forbidden("vouchers are seen by their tenant and the platform's roles")
    return tenant_id


def _filtered(q: Any, table: Any, **equal: object) -> Any:
    """`q` narrowed to rows of `table` whose columns equal the given values (None: no filter)."""
    for column, value in equal.items():
        if value is not None:
            q = q.where(getattr(table, column) == value)
    return q


def list_applications(p: Platform, actor: Principal, *, programme_id: int | None = None,
                      state: str | None = None, tenant_id: int | None = None) -> list[dict[str, Any]]:
    tenant_id = _visible_tenant(actor, tenant_id)
    with p.db.session() as s:
        q = select(m.VoucherApplication, m.VoucherGrant.id).join(
            m.VoucherGrant, m.VoucherGrant.application_id == m.VoucherApplication.id, isouter=True)
        q = _filtered(q, m.VoucherApplication, programme_id=programme_id, tenant_id=tenant_id,
                      state=state)
        return [_application_view(a, g) for a, g in s.execute(q.order_by(m.VoucherApplication.id))]


def review(p: Platform, actor: Principal, application_id: int, *, decision: str,
           approved_fen: int | None = None, reason: str = "") -> dict[str, Any]:
    """Approve (all or part, with a reason for a part) or reject (with a reason) a pending
    application (reviewer). An approval commits the grant from the pool, which can never be
    over-committed, and never beyond the tenant's cap."""
    actor.require(Role.REVIEWER, Role.PLATFORM_ADMIN)
    reason = reason.strip()
    if decision not in DECISIONS:
        raise InvalidInput("decision is approve or reject", field="decision")
    if len(reason) > 500:
        raise InvalidInput("a reason has at most 500 characters", field="reason")
    now = p.clock.now()
    with p.db.session() as s:
        a = s.get(m.VoucherApplication, application_id)
        if a is None:
            raise NotFound(f"no voucher application {application_id}")
        # Lock the programme (the pool) first, then read: approvals of one pool go one at a time.
        s.execute(update(m.VoucherProgramme).where(m.VoucherProgramme.id == a.programme_id)
                  .values(rules_version=m.VoucherProgramme.rules_version))
        s.refresh(a)
        if a.state != "pending":
            raise Conflict(f"application {a.id} was already reviewed ({a.state})")
        grant_id = None
        if decision == "reject":
            if not reason:
                raise InvalidInput("a rejection needs a reason", field="reason")
            a.state, a.approved_fen = "rejected", 0
        else:
            amount = a.requested_fen if approved_fen is None else approved_fen
            if type(amount) is not int or not 0 < amount <= a.requested_fen:
                raise InvalidInput(f"approved_fen is 1 to the requested {a.requested_fen}",
                                   field="approved_fen")
            if amount < a.requested_fen and not reason:
                raise InvalidInput("a partial approval needs a reason", field="reason")
            prog = programme_row(s, a.programme_id)
            rules = rules_of(s, prog)
            available = balance(s, le.voucher_available(prog.id))
            if amount > available:
                raise Conflict(f"the pool of {prog.name} has only {yuan(available)} left to grant; "
                               f"approve at most that")
            cap_left = rules.tenant_cap_fen - _granted_total(s, prog.id, a.tenant_id)
            if amount > cap_left:
                raise Conflict(f"the tenant cap leaves {yuan(max(0, cap_left))} for this tenant")
            tenant = s.get(m.Tenant, a.tenant_id)
            assert tenant is not None
            if tenant.frozen_at is not None:
                raise Conflict(f"tenant {tenant.id} is frozen: {tenant.frozen_reason}")
            expires = min(now + timedelta(days=rules.validity_days), prog.ends_at + timedelta(days=365))
            g = m.VoucherGrant(programme_id=prog.id, tenant_id=a.tenant_id, application_id=a.id,
                               amount_fen=amount, granted_at=now, expires_at=expires, state="active")
            s.add(g)
            s.flush()
            grant_id = g.id
            a.state = "approved" if amount == a.requested_fen else "partly_approved"
            a.approved_fen = amount
            post(s, le.grant(prog.id, g.id, a.tenant_id, amount), now, actor=actor)
        a.reason, a.reviewer_id, a.reviewed_at = reason, actor.user_id, now
        audit.record(s, "voucher.review", f"application:{a.id}",
                     {"decision": a.state, "approved_fen": a.approved_fen, "reason": reason,
                      "grant_id": grant_id}, now, actor)
        return _application_view(a, grant_id)


# -- grants -----------------------------------------------------------------------------------------

def _grant_views(s: Session, grants: list[m.VoucherGrant]) -> list[dict[str, Any]]:
    codes = [le.voucher_grant(g.programme_id, g.id) for g in grants]
    left = balances_of(s, codes)
    out = []
    for g, code in zip(grants, codes, strict=True):
        redeemed = int(s.scalar(select(func.coalesce(func.sum(m.VoucherRedemption.amount_fen), 0))
                                .where(m.VoucherRedemption.grant_id == g.id)) or 0)
        out.append({"id": g.id, "programme_id": g.programme_id, "tenant_id": g.tenant_id,
                    "application_id": g.application_id, "amount_fen": g.amount_fen,
                    "left_fen": left[code], "redeemed_fen": redeemed, "granted_at": g.granted_at,
                    "expires_at": g.expires_at, "state": g.state, "expired_at": g.expired_at})
    return out


def list_grants(p: Platform, actor: Principal, *, programme_id: int | None = None,
                tenant_id: int | None = None) -> list[dict[str, Any]]:
    tenant_id = _visible_tenant(actor, tenant_id)
    with p.db.session() as s:
        q = _filtered(select(m.VoucherGrant), m.VoucherGrant, programme_id=programme_id,
                      tenant_id=tenant_id)
        return _grant_views(s, list(s.scalars(q.order_by(m.VoucherGrant.id))))


def expire_grants(p: Platform, now: datetime | None = None) -> int:
    """Expire every grant past its date: its unspent part returns to the pool. Returns how many."""
    now = now or p.clock.now()
    expired = 0
    with p.db.session() as s:
        due = list(s.scalars(select(m.VoucherGrant.id).where(m.VoucherGrant.state == "active",
                                                             m.VoucherGrant.expires_at <= now)))
    for grant_id in due:
        with p.db.session() as s:
            s.execute(update(m.VoucherGrant).where(m.VoucherGrant.id == grant_id)
                      .values(state=m.VoucherGrant.state))
            g = s.get(m.VoucherGrant, grant_id)
            assert g is not None
            s.refresh(g)
            if g.state != "active":
                continue
            left = balance(s, le.voucher_grant(g.programme_id, g.id))
            if left > 0:
                post(s, le.expiry(g.programme_id, g.id, left), now)
            g.state, g.expired_at = "expired", now
            audit.record(s, "voucher.expire", f"grant:{g.id}", {"returned_fen": left}, now)
            expired += 1
    return expired


# -- post-hoc claims (奖补) ----------------------------------------------------------------------------

def claim(p: Platform, actor: Principal, grant_id: int, period: str) -> dict[str, Any]:
    """The subsidy on fees a tenant paid in one settled period, under a post-hoc programme (tenant
    admin). Each run is subsidised once; runs on related or non-whitelisted centers are not."""
    actor.require(Role.TENANT_ADMIN)
    now = p.clock.now()
    try:
        start, end = period_bounds(period)
    except RulesError as exc:
        raise InvalidInput(str(exc), field="period") from exc
    with p.db.session() as s:
        s.execute(update(m.VoucherGrant).where(m.VoucherGrant.id == grant_id)
                  .values(state=m.VoucherGrant.state))
        g = s.get(m.VoucherGrant, grant_id)
        if g is None or g.tenant_id != actor.tenant_id:
            raise NotFound(f"no voucher grant {grant_id}")  # grants are not transferable
        prog = programme_row(s, g.programme_id)
        rules = rules_of(s, prog)
        if prog.mode != "post_hoc":
            raise Conflict(f"programme {prog.name} pays at billing time (point of sale); "
                           "there is nothing to claim")
        if period != period_of(start, rules.settlement_period):
            raise InvalidInput(f"the programme settles {rules.settlement_period}: claim a period like "
                               f"{period_of(now, rules.settlement_period)}", field="period")
        if end > now:
            raise Conflict(f"period {period} has not ended yet")
        tenant = s.get(m.Tenant, g.tenant_id)
        assert tenant is not None
        if tenant.frozen_at is not None:
            raise Forbidden(f"tenant {tenant.id} is frozen: {tenant.frozen_reason}")
        if g.state != "active" or g.expires_at <= now:
            raise Conflict(f"grant {g.id} has expired")
        if s.scalar(select(m.VoucherClaim.id).where(m.VoucherClaim.grant_id == g.id,
                                                    m.VoucherClaim.period == period)) is not None:
            raise Conflict(f"period {period} was already claimed on grant {g.id}")
        related = set(s.scalars(select(m.RelatedParty.center_id)
                                .where(m.RelatedParty.tenant_id == g.tenant_id)))
        rows = s.execute(
            select(m.UsageRecord, m.Center.slug, m.Pool.domestic, m.Pool.device_kind,
                   m.Center.connector)
            .join(m.Center, m.Center.id == m.UsageRecord.center_id)
            .join(m.Pool, m.Pool.id == m.UsageRecord.pool_id)
            .join(m.VoucherRedemption, m.VoucherRedemption.run_id == m.UsageRecord.run_id, isouter=True)
            .where(m.UsageRecord.tenant_id == g.tenant_id, m.UsageRecord.ended_at >= start,
                   m.UsageRecord.ended_at < end, m.UsageRecord.amount_fen > 0,
                   m.VoucherRedemption.id.is_(None))
            .order_by(m.UsageRecord.id)).all()
        left = balance(s, le.voucher_grant(prog.id, g.id))  # the cap bounds the grants, so this
        c = m.VoucherClaim(grant_id=g.id, tenant_id=g.tenant_id, period=period, runs=0, fees_fen=0,
                           amount_fen=0, created_at=now)
        s.add(c)
        s.flush()
        total = fees = runs = 0
        for u, slug, domestic, kind, connector in rows:
            if u.center_id in related or not rules.center_allowed(slug, peer=connector == "suanli"):
                continue
            ratio = rules.ratio_for(domestic=domestic, device_kind=kind, center=slug)
            v = subsidy(u.amount_fen, ratio, left - total)
            if v <= 0:
                continue
            s.add(m.VoucherRedemption(run_id=u.run_id, grant_id=g.id, programme_id=prog.id,
                                      tenant_id=g.tenant_id, center_id=u.center_id, claim_id=c.id,
                                      bill_fen=u.amount_fen, amount_fen=v, ratio_bp=ratio,
                                      rules_version=prog.rules_version, at=now, clawback_reason=""))
            total, fees, runs = total + v, fees + u.amount_fen, runs + 1
        c.runs, c.fees_fen, c.amount_fen = runs, fees, total
        if total:
            c.ledger_tx_id = post(s, le.claim(c.id, le.VoucherPart(prog.id, g.id, total), g.tenant_id),
                                  now, actor=actor)
        audit.record(s, "voucher.claim", f"claim:{c.id}",
                     {"grant_id": g.id, "period": period, "runs": runs, "fees_fen": fees,
                      "amount_fen": total}, now, actor)
        return {"id": c.id, "grant_id": g.id, "period": period, "runs": runs, "fees_fen": fees,
                "amount_fen": total, "created_at": now}


# -- audit: redemptions, clawback, freeze, related parties ------------------------------------------

def _redemption_view(r: m.VoucherRedemption) -> dict[str, Any]:
    return {"id": r.id, "run_id": r.run_id, "grant_id": r.grant_id, "programme_id": r.programme_id,
            "tenant_id": r.tenant_id, "center_id": r.center_id, "claim_id": r.claim_id,
            "bill_fen": r.bill_fen, "amount_fen": r.amount_fen, "ratio_bp": r.ratio_bp,
            "rules_version": r.rules_version, "at": r.at, "clawed_back_at": r.clawed_back_at,
            "clawback_reason": r.clawback_reason}


def list_redemptions(p: Platform, actor: Principal, *, programme_id: int | None = None,
                     tenant_id: int | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    tenant_id = _visible_tenant(actor, tenant_id)
    with p.db.session() as s:
        q = _filtered(select(m.VoucherRedemption), m.VoucherRedemption,
                      programme_id=programme_id, tenant_id=tenant_id)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = s.scalars(q.order_by(m.VoucherRedemption.id.desc()).limit(limit).offset(offset))
        return {"items": [_redemption_view(r) for r in rows], "total": int(total), "limit": limit,
                "offset": offset}


def clawback(p: Platform, actor: Principal, redemption_id: int, reason: str) -> dict[str, Any]:
    """Take back a redemption found improper (auditor): reversing entries return the money to the
    pool and the tenant owes it instead."""
    actor.require(Role.AUDITOR)
    reason = reason.strip()
    if not 0 < len(reason) <= 500:
        raise InvalidInput("a clawback needs a reason (1-500 characters)", field="reason")
    now = p.clock.now()
    with p.db.session() as s:
        s.execute(update(m.VoucherRedemption).where(m.VoucherRedemption.id == redemption_id)
                  .values(clawback_reason=m.VoucherRedemption.clawback_reason))
        r = s.get(m.VoucherRedemption, redemption_id)
        if r is None:
            raise NotFound(f"no voucher redemption {redemption_id}")
        s.refresh(r)
        if r.clawed_back_at is not None:
            raise Conflict(f"redemption {r.id} was already clawed back")
        post(s, le.clawback(r.id, r.programme_id, r.tenant_id, r.amount_fen), now, actor=actor)
        r.clawed_back_at, r.clawback_reason = now, reason
        audit.record(s, "voucher.clawback", f"redemption:{r.id}",
                     {"amount_fen": r.amount_fen, "run_id": r.run_id, "reason": reason}, now, actor)
        return _redemption_view(r)


def freeze(p: Platform, actor: Principal, tenant_id: int, reason: str, *,
           frozen: bool = True) -> dict[str, Any]:
    """Freeze a tenant's vouchers (auditor): it can neither apply nor redeem until unfrozen."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.AUDITOR)
    reason = reason.strip()
    if frozen and not 0 < len(reason) <= 500:
        raise InvalidInput("freezing needs a reason (1-500 characters)", field="reason")
    now = p.clock.now()
    with p.db.session() as s:
        t = s.get(m.Tenant, tenant_id)
        if t is None:
            raise NotFound(f"no tenant {tenant_id}")
        t.frozen_at, t.frozen_reason = (now, reason) if frozen else (None, "")
        audit.record(s, "voucher.freeze" if frozen else "voucher.unfreeze", f"tenant:{tenant_id}",
                     {"reason": reason}, now, actor)
        return {"tenant_id": t.id, "frozen_at": t.frozen_at, "frozen_reason": t.frozen_reason}


def declare_related(p: Platform, actor: Principal, tenant_id: int, center_id: int,
                    relation: str) -> dict[str, Any]:
    """Declare that a tenant is related to a center (its own admin, a platform admin or an
    auditor): vouchers never pay for runs there."""
    hide_other_tenant(actor, tenant_id)  # another tenant's parties: 404, as when listing them
    if not (actor.role in (Role.PLATFORM_ADMIN, Role.AUDITOR)
            or (actor.role is Role.TENANT_ADMIN and actor.tenant_id == tenant_id)):
        raise Forbidden("related parties are declared by the tenant's admin, a platform admin or an auditor")
    relation = relation.strip()
    if not 0 < len(relation) <= 200:
        raise InvalidInput("describe the relation in 1-200 characters", field="relation")
    now = p.clock.now()
    with p.db.session() as s:
        if s.get(m.Tenant, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        if s.get(m.Center, center_id) is None:
            raise NotFound(f"no center {center_id}", field="center_id")
        if s.scalar(select(m.RelatedParty.id).where(m.RelatedParty.tenant_id == tenant_id,
                                                    m.RelatedParty.center_id == center_id)) is not None:
            raise Conflict(f"tenant {tenant_id} and center {center_id} are already declared related")
        s.add(m.RelatedParty(tenant_id=tenant_id, center_id=center_id, relation=relation,
                             declared_at=now, declared_by=actor.user_id))
        audit.record(s, "voucher.related_party", f"tenant:{tenant_id}",
                     {"center_id": center_id, "relation": relation}, now, actor)
    return {"tenant_id": tenant_id, "center_id": center_id, "relation": relation, "declared_at": now}


def list_related(p: Platform, actor: Principal, tenant_id: int) -> list[dict[str, Any]]:
    tenant_id_seen = _visible_tenant(actor, tenant_id)
    with p.db.session() as s:
        return [{"tenant_id": r.tenant_id, "center_id": r.center_id, "relation": r.relation,
                 "declared_at": r.declared_at}
                for r in s.scalars(select(m.RelatedParty).where(m.RelatedParty.tenant_id == tenant_id_seen)
                                   .order_by(m.RelatedParty.id))]

