"""Where the voucher money went: by tenant, center, district, device kind, domestic vs other, or
month; the pool's burn-down against the year; P·h bought per yuan of subsidy. Clawed-back
redemptions are not counted."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select

from ..domain import csvsafe
from ..domain.enums import Role
from ..domain.errors import InvalidInput
from ..store import models as m
from ..vouchers import period_of
from .auth import Principal
from .context import Platform
from .vouchers import pool_figures, programme_row

DIMENSIONS = ("tenant", "center", "district", "device_kind", "domestic", "month")
COLUMNS = ("key", "runs", "bill_fen", "voucher_fen", "pflops_hours", "unit_hours")


def report(p: Platform, actor: Principal, programme_id: int, by: str = "tenant") -> dict[str, Any]:
    actor.require(Role.PLATFORM_ADMIN, Role.REVIEWER, Role.AUDITOR)
    if by not in DIMENSIONS:
        raise InvalidInput(f"by is one of {', '.join(DIMENSIONS)}", field="by")
    r, u = m.VoucherRedemption, m.UsageRecord
    with p.db.session() as s:
        prog = programme_row(s, programme_id)
        pool = pool_figures(s, programme_id)
        base = (select().select_from(r).join(u, u.run_id == r.run_id)
                .where(r.programme_id == programme_id, r.clawed_back_at.is_(None)))
        metrics = (func.count(r.id), func.sum(r.bill_fen), func.sum(r.amount_fen),
                   func.sum(u.pflops_hours), func.sum(u.unit_seconds))
        groups: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])
        if by == "month":
            for at, bill_fen, amount, ph, us in s.execute(base.add_columns(
                    r.at, r.bill_fen, r.amount_fen, u.pflops_hours, u.unit_seconds)):
                g = groups[period_of(at, "monthly")]
                g[0] += 1
                g[1] += bill_fen
                g[2] += amount
                g[3] += ph
                g[4] += us
        else:
            key: Any = {"tenant": m.Tenant.name, "center": m.Center.slug, "district": m.Tenant.district,
                        "device_kind": m.Pool.device_kind, "domestic": m.Pool.domestic}[by]
            q = base.add_columns(key, *metrics)
            if by in ("tenant", "district"):
                q = q.join(m.Tenant, m.Tenant.id == r.tenant_id)
            elif by == "center":
                q = q.join(m.Center, m.Center.id == r.center_id)
            else:
                q = q.join(m.Pool, m.Pool.id == u.pool_id)
            for k, runs, bill_fen, amount, ph, us in s.execute(q.group_by(key)):
                name = ("domestic" if k else "other") if by == "domestic" else (str(k) if k else "-")
                g = groups[name]
                g[0] += int(runs)
                g[1] += int(bill_fen or 0)
                g[2] += int(amount or 0)
                g[3] += float(ph or 0.0)
                g[4] += int(us or 0)
        burn = burn_down(s, programme_id, prog.year, pool["budget_fen"])
    rows: list[dict[str, Any]] = [
        {"key": k, "runs": int(g[0]), "bill_fen": int(g[1]), "voucher_fen": int(g[2]),
         "pflops_hours": round(g[3], 6), "unit_hours": round(g[4] / 3600, 3)}
        for k, g in sorted(groups.items(), key=lambda kv: (-kv[1][2], kv[0]))]
    subsidy = sum(x["voucher_fen"] for x in rows)
    pflops = sum(x["pflops_hours"] for x in rows)
    return {"programme_id": programme_id, "name": prog.name, "by": by, "rows": rows,
            "totals": {"runs": sum(x["runs"] for x in rows), "bill_fen": sum(x["bill_fen"] for x in rows),
                       "voucher_fen": subsidy, "pflops_hours": round(pflops, 6),
                       "pflops_hours_per_yuan": round(pflops / (subsidy / 100), 6) if subsidy else None},
            "pool": pool, "burn_down": burn}


def burn_down(s: Any, programme_id: int, year: int, budget: int) -> list[dict[str, Any]]:
    """Month by month: what was paid, what is left of the budget, and the even-spend plan."""
    r = m.VoucherRedemption
    paid: dict[str, int] = defaultdict(int)
    for at, amount in s.execute(select(r.at, r.amount_fen).where(r.programme_id == programme_id)):
        paid[period_of(at, "monthly")] += amount
    for at, amount in s.execute(select(r.clawed_back_at, r.amount_fen).where(
            r.programme_id == programme_id, r.clawed_back_at.is_not(None))):
        paid[period_of(at, "monthly")] -= amount
    out, spent = [], 0
    for month in range(1, 13):
        key = f"{year}-{month:02d}"
        spent += paid.get(key, 0)
        out.append({"month": key, "paid_fen": paid.get(key, 0), "left_fen": budget - spent,
                    "plan_left_fen": budget - budget * month // 12})
    return out


def to_csv(data: dict[str, Any]) -> str:
    return csvsafe.to_csv(data["rows"], COLUMNS)
