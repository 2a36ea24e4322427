"""Monthly settlement: statements per center (what the platform pays it), per tenant (the invoice:
gross, voucher, net) and per voucher programme (what the city pays the platform), with the
payments posted to the ledger. Settling a month is idempotent: the statements are stored, and the
payments' ledger keys name the month.

What a month holds (UTC):
- a center's statement: the runs that ended in the month — runs, unit-hours, P·h, the gross amount
  billed, the part vouchers paid; the platform pays the center the gross amount.
- a tenant's invoice: the same runs — gross, the point-of-sale voucher part, adjustments (voucher
  money clawed back in the month, less post-hoc subsidies paid in it) and net = gross − voucher +
  adjustments.
- a programme's statement: redemptions made in the month less clawbacks in it; the city pays
  (or, when negative, is refunded) that amount.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import csvsafe
from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from ..ledger import entries as le
from ..store import models as m
from ..vouchers import RulesError, period_bounds
from . import audit
from .auth import Principal, hide_other_tenant
from .context import Platform
from .ledger import post_many

PARTIES = ("center", "tenant", "city")
COLUMNS = ("month", "party", "party_id", "name", "runs", "unit_hours", "pflops_hours", "gross_fen",
           "voucher_fen", "adjustments_fen", "net_fen")


def recent_months(now: datetime, n: int) -> list[str]:
    """The month of `now` and the n-1 before it, newest first: ["2026-12", "2026-11", …]."""
    return [f"{now.year + (now.month - 1 - k) // 12}-{(now.month - 1 - k) % 12 + 1:02d}"
            for k in range(n)]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    if len(month) != 7:
        raise InvalidInput(f"a month is written 2026-11, not {month!r}", field="month")
    try:
        return period_bounds(month)
    except RulesError as exc:
        raise InvalidInput(str(exc), field="month") from exc


def _usage_by(s: Session, column: Any, start: datetime, end: datetime,
              only: int | None = None) -> dict[int, list[Any]]:
    """runs, unit-seconds, P·h, gross and voucher part of the runs that ended in [start, end)
    (of one center or tenant with `only`)."""
    u = m.UsageRecord
    in_month = and_(u.ended_at >= start, u.ended_at < end)
    if only is not None:
        in_month = and_(in_month, column == only)
    out: dict[int, list[Any]] = {}
    for key, runs, us, ph, gross in s.execute(
            select(column, func.count(u.id), func.sum(u.unit_seconds), func.sum(u.pflops_hours),
                   func.sum(u.amount_fen)).where(in_month).group_by(column)):
        out[key] = [int(runs), int(us or 0), float(ph or 0.0), int(gross or 0), 0]
    r = m.VoucherRedemption
    rcol = r.center_id if column is u.center_id else r.tenant_id
    q = (select(rcol, func.sum(r.amount_fen)).join(u, u.run_id == r.run_id)
         .where(in_month, r.clawed_back_at.is_(None)).group_by(rcol))
    if column is u.tenant_id:
        q = q.where(r.claim_id.is_(None))  # post-hoc subsidies are adjustments, not on the invoice
    for key, v in s.execute(q):
        if key in out:
            out[key][4] = int(v or 0)
    return out


def _sum_by(s: Session, column: Any, amount: Any, *where: Any) -> dict[int, int]:
    return {k: int(v or 0) for k, v in s.execute(select(column, func.sum(amount)).where(*where)
                                                  .group_by(column))}


def settle(p: Platform, actor: Principal, month: str, *, preview: bool = False) -> dict[str, Any]:
    """Settle a month that is over (platform admin); again returns the stored statements. With
    `preview`, any month so far: the same statements, computed and not stored or paid."""
    actor.require(Role.PLATFORM_ADMIN)
    start, end = month_bounds(month)
    now = p.clock.now()
    if preview:
        with p.db.sessions() as s:
            try:
                rows = _settle(s, month, start, end, now, actor)
                s.flush()
                items = _views(s, rows)
            finally:
                s.rollback()  # nothing stored, nothing paid
        return _page(month, False, items)
    if end > now:
        raise Conflict(f"{month} is not over yet; settle it from {end.isoformat()}")
    try:
        with p.db.session() as s:
            if s.scalar(select(m.Statement.id).where(m.Statement.month == month).limit(1)) is None:
                _settle(s, month, start, end, now, actor)
    except IntegrityError:
        pass  # settled at the same moment by another request: read what it stored
    return statements(p, actor, month)


def _settle(s: Session, month: str, start: datetime, end: datetime, now: datetime,
            actor: Principal) -> list[m.Statement]:
    u, r, c = m.UsageRecord, m.VoucherRedemption, m.VoucherClaim
    rows: list[m.Statement] = []
    paid_by: dict[int, le.Entry] = {}  # statement index -> its payment
    by_center = _usage_by(s, u.center_id, start, end)
    # A peer platform's center is paid what the peer billed us (its charges, by its month), not
    # what we billed our tenants for the runs there (that difference is our margin).
    peer_centers = set(s.scalars(select(m.Center.id).where(m.Center.connector == "suanli")))
    charged = _sum_by(s, m.PeerCharge.center_id, m.PeerCharge.amount_fen,
                      m.PeerCharge.month == month)
    for center_id in sorted(set(by_center) | set(charged)):
        runs, us, ph, gross, voucher = by_center.get(center_id, [0, 0, 0.0, 0, 0])
        net = charged.get(center_id, 0) if center_id in peer_centers else gross
        rows.append(m.Statement(month=month, party="center", party_id=center_id, runs=runs,
                                unit_seconds=us, pflops_hours=ph, gross_fen=gross, voucher_fen=voucher,
                                adjustments_fen=net - gross, net_fen=net, created_at=now))
        if net > 0:
            paid_by[len(rows) - 1] = le.center_payout(center_id, month, net)
    clawed = _sum_by(s, r.tenant_id, r.amount_fen, r.clawed_back_at >= start, r.clawed_back_at < end)
    claimed = _sum_by(s, c.tenant_id, c.amount_fen, c.created_at >= start, c.created_at < end)
    tenants = _usage_by(s, u.tenant_id, start, end)
    for tenant_id in sorted(set(tenants) | set(clawed) | set(claimed)):
        runs, us, ph, gross, voucher = tenants.get(tenant_id, [0, 0, 0.0, 0, 0])
        adj = clawed.get(tenant_id, 0) - claimed.get(tenant_id, 0)
        rows.append(m.Statement(month=month, party="tenant", party_id=tenant_id, runs=runs,
                                unit_seconds=us, pflops_hours=ph, gross_fen=gross, voucher_fen=voucher,
                                adjustments_fen=adj, net_fen=gross - voucher + adj, created_at=now))
    redeemed = _sum_by(s, r.programme_id, r.amount_fen, r.at >= start, r.at < end)
    runs_by = {k: int(n) for k, n in s.execute(select(r.programme_id, func.count(r.id))
                                               .where(r.at >= start, r.at < end).group_by(r.programme_id))}
    taken = _sum_by(s, r.programme_id, r.amount_fen, r.clawed_back_at >= start, r.clawed_back_at < end)
    for programme_id in sorted(set(redeemed) | set(taken)):
        v, back = redeemed.get(programme_id, 0), taken.get(programme_id, 0)
        rows.append(m.Statement(month=month, party="city", party_id=programme_id,
                                runs=runs_by.get(programme_id, 0), unit_seconds=0, pflops_hours=0.0,
                                gross_fen=v, voucher_fen=v, adjustments_fen=-back, net_fen=v - back,
                                created_at=now))
        if v != back:
            paid_by[len(rows) - 1] = le.city_payment(programme_id, month, v - back)
    s.add_all(rows)
    s.flush()
    order = sorted(paid_by)
    ids = post_many(s, [paid_by[i] for i in order], now, actor=actor) if order else []
    for i, tx_id in zip(order, ids, strict=True):
        rows[i].ledger_tx_id = tx_id
    audit.record(s, "settlement", f"month:{month}",
                 {"centers": sum(1 for x in rows if x.party == "center"),
                  "tenants": sum(1 for x in rows if x.party == "tenant"),
                  "gross_fen": sum(x.gross_fen for x in rows if x.party == "center"),
                  "voucher_fen": sum(x.net_fen for x in rows if x.party == "city")}, now, actor)
    return rows


def _names(s: Session, party: str, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    model: Any = {"center": m.Center, "tenant": m.Tenant, "city": m.VoucherProgramme}[party]
    col = model.slug if party == "center" else model.name
    return {int(k): str(v) for k, v in s.execute(select(model.id, col).where(model.id.in_(ids)))}


def _view(st: m.Statement, name: str) -> dict[str, Any]:
    return {"month": st.month, "party": st.party, "party_id": st.party_id, "name": name,
            "runs": st.runs, "unit_hours": round(st.unit_seconds / 3600, 3),
            "pflops_hours": round(st.pflops_hours, 6), "gross_fen": st.gross_fen,
            "voucher_fen": st.voucher_fen, "adjustments_fen": st.adjustments_fen,
            "net_fen": st.net_fen, "ledger_tx_id": st.ledger_tx_id, "created_at": st.created_at}


def statements(p: Platform, actor: Principal, month: str, *, party: str | None = None,
               party_id: int | None = None) -> dict[str, Any]:
    """A settled month's statements. The platform's roles see all; a center operator its center's;
    a tenant's users their invoice."""
    month_bounds(month)
    if party is not None and party not in PARTIES:
        raise InvalidInput(f"party is one of {', '.join(PARTIES)}", field="party")
    if actor.role.is_tenant:
        if party_id is not None and party in (None, "tenant"):
            hide_other_tenant(actor, party_id)
        party, party_id = "tenant", actor.tenant_id
    elif actor.role is Role.CENTER_OPERATOR:
        party, party_id = "center", actor.center_id
    with p.db.session() as s:
        q = select(m.Statement).where(m.Statement.month == month)
        if party is not None:
            q = q.where(m.Statement.party == party)
        if party_id is not None:
            q = q.where(m.Statement.party_id == party_id)
        rows = list(s.scalars(q.order_by(m.Statement.party, m.Statement.party_id)))
        settled = s.scalar(select(m.Statement.id).where(m.Statement.month == month).limit(1)) is not None
        items = _views(s, rows)
    return _page(month, settled, items)


def _views(s: Session, rows: list[m.Statement]) -> list[dict[str, Any]]:
    names: dict[tuple[str, int], str] = {}
    by_party: dict[str, list[int]] = defaultdict(list)
    for st in rows:
        by_party[st.party].append(st.party_id)
    for kind, ids in by_party.items():
        names.update({(kind, k): v for k, v in _names(s, kind, ids).items()})
    order = {party: i for i, party in enumerate(PARTIES)}
    rows = sorted(rows, key=lambda st: (order[st.party], st.party_id))
    return [_view(st, names.get((st.party, st.party_id), "")) for st in rows]


def _page(month: str, settled: bool, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"month": month, "settled": settled, "items": items,
            "totals": {k: sum(i[k] for i in items if i["party"] == "center")
                       for k in ("runs", "gross_fen", "voucher_fen")}}


def history(p: Platform, actor: Principal, *, months: int = 12) -> dict[str, Any]:
    """The caller's own statements month by month, newest first: a tenant's invoices, a center
    operator's statements. Settled months as stored; months not settled yet (the current one
    included) computed from the runs so far, marked `settled: false` — what the invoice will say
    if nothing changes. Months with nothing in them are left out, except the current one."""
    if not 1 <= months <= 120:
        raise InvalidInput("months is 1 to 120", field="months")
    if actor.role.is_tenant and actor.tenant_id is not None:
        party, party_id, column = "tenant", actor.tenant_id, m.UsageRecord.tenant_id
    elif actor.role is Role.CENTER_OPERATOR and actor.center_id is not None:
        party, party_id, column = "center", actor.center_id, m.UsageRecord.center_id
    else:
        raise Forbidden("bills are a tenant's or a center operator's own; the platform reads "
                        "/api/v1/settlements")
    now = p.clock.now()
    keys = recent_months(now, months)
    out: list[dict[str, Any]] = []
    with p.db.session() as s:
        stored = {st.month: st for st in s.scalars(
            select(m.Statement).where(m.Statement.party == party, m.Statement.party_id == party_id,
                                      m.Statement.month.in_(keys)))}
        settled_months = set(s.scalars(select(m.Statement.month).where(m.Statement.month.in_(keys))
                                       .distinct()))
        name = _names(s, party, [party_id]).get(party_id, "")
        for key in keys:
            if key in stored:
                out.append({**_view(stored[key], name), "settled": True})
                continue
            if key in settled_months:
                continue  # settled, and nothing of ours in it
            start, end = month_bounds(key)
            row = _open_row(s, party, column, party_id, start, end)
            if row is None and key != keys[0]:
                continue
            runs, us, ph, gross, voucher, adj = row or (0, 0, 0.0, 0, 0, 0)
            net = gross - voucher + adj if party == "tenant" else gross
            out.append({"month": key, "party": party, "party_id": party_id, "name": name,
                        "runs": runs, "unit_hours": round(us / 3600, 3),
                        "pflops_hours": round(ph, 6), "gross_fen": gross,
                        "voucher_fen": voucher, "adjustments_fen": adj, "net_fen": net,
                        "ledger_tx_id": None, "created_at": None, "settled": False})
    return {"party": party, "party_id": party_id, "name": name, "items": out}


def _open_row(s: Session, party: str, column: Any, party_id: int, start: datetime,
              end: datetime) -> tuple[int, int, float, int, int, int] | None:
    """What settling [start, end) would put on one party's statement; None when nothing."""
    runs, us, ph, gross, voucher = _usage_by(s, column, start, end, only=party_id).get(
        party_id, [0, 0, 0.0, 0, 0])
    adj = 0
    if party == "tenant":
        r, c = m.VoucherRedemption, m.VoucherClaim
        adj = (_sum_by(s, r.tenant_id, r.amount_fen, r.tenant_id == party_id,
                       r.clawed_back_at >= start, r.clawed_back_at < end).get(party_id, 0)
               - _sum_by(s, c.tenant_id, c.amount_fen, c.tenant_id == party_id,
                         c.created_at >= start, c.created_at < end).get(party_id, 0))
    if not runs and not adj:
        return None
    return runs, us, ph, gross, voucher, adj


def invoice(p: Platform, actor: Principal, month: str, tenant_id: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = statements(p, actor, month, party="tenant", party_id=tenant_id)["items"]
    if not found or found[0]["party_id"] != tenant_id:
        raise NotFound(f"no invoice for tenant {tenant_id} in {month}: invoices are for settled "
                       "months (GET /api/v1/bills shows a month so far)")
    return found[0]


def to_csv(items: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    return csvsafe.to_csv(items, columns)
