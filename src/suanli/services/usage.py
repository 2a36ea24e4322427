"""Metered usage: per-run records and totals, with the same visibility rules as jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from ..domain.enums import Role
from ..domain.errors import InvalidInput
from ..store import models as m
from .auth import Principal, hide_other_tenant
from .context import Platform
from .jobs import check_page


@dataclass
class UsagePage:
    items: list[m.UsageRecord]
    total: int
    totals: dict[str, Any]
    limit: int
    offset: int


def list_usage(
    p: Platform,
    actor: Principal,
    *,
    job_id: int | None = None,
    tenant_id: int | None = None,
    center_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> UsagePage:
    check_page(limit, offset)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a timezone (e.g. 2026-01-01T00:00:00Z)", field=name)
    if tenant_id is not None:
        hide_other_tenant(actor, tenant_id)
    u = m.UsageRecord
    conds: list[Any] = []
    if actor.role.is_tenant:
        conds.append(u.tenant_id == actor.tenant_id)
    elif actor.role is Role.CENTER_OPERATOR:
        conds.append(u.center_id == actor.center_id)
    if job_id is not None:
        conds.append(u.job_id == job_id)
    if tenant_id is not None:
        conds.append(u.tenant_id == tenant_id)
    if center_id is not None:
        conds.append(u.center_id == center_id)
    if since is not None:
        conds.append(u.ended_at >= since)
    if until is not None:
        conds.append(u.ended_at < until)
    with p.db.session() as s:
        agg = s.execute(
            select(
                func.count(u.id), func.coalesce(func.sum(u.unit_seconds), 0),
                func.coalesce(func.sum(u.pflops_hours), 0.0),
                func.coalesce(func.sum(u.energy_wh), 0), func.coalesce(func.sum(u.amount_fen), 0),
            ).where(*conds)
        ).one()
        items = list(s.scalars(select(u).where(*conds).order_by(u.id.desc())
                               .limit(limit).offset(offset)))
    totals = {
        "runs": int(agg[0]),
        "unit_seconds": int(agg[1]),
        "unit_hours": round(int(agg[1]) / 3600, 6),
        "pflops_hours": round(float(agg[2]), 9),
        "energy_wh": int(agg[3]),
        "amount_fen": int(agg[4]),
    }
    return UsagePage(items, int(agg[0]), totals, limit, offset)
