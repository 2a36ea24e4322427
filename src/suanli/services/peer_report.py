"""A national view (issue 18): a platform reports upward to its parent node — its own capacity
(P per precision, by kind), utilisation and aggregate usage per month, and the jobs it
exchanged with its peers — never a tenant's name, job or bill. The parent keeps each member's
last report and shows its members beside itself (`network_view`, the dashboard's map).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from ..domain.enums import CenterStatus, Role
from ..domain.errors import ConnectorError, Forbidden
from ..store import models as m
from .auth import Principal
from .centers import CapacityFigures, used_units_by_pool
from .context import Platform
from .peers import BORROWS, LENDS
from .settlement import month_bounds, recent_months

log = logging.getLogger(__name__)

MONTHS = 12


def build(p: Platform) -> dict[str, Any]:
    """This platform's report: its own compute only (not what it borrows from peers)."""
    now = p.clock.now()
    total = CapacityFigures()
    by_kind: dict[str, CapacityFigures] = defaultdict(CapacityFigures)
    with p.db.session() as s:
        in_use = used_units_by_pool(s)
        rows = s.execute(select(m.Pool, m.Center).join(m.Center).where(
            m.Center.connector != "suanli", m.Center.status != CenterStatus.OFFLINE.value,
            m.Pool.withdrawn_at.is_(None))).all()
        for pool, center in rows:
            free = max(0, pool.total_units - in_use.get(pool.id, 0))
            total.add(pool, free)
            by_kind[center.kind].add(pool, free)
        u = m.UsageRecord
        peer_centers = select(m.Center.id).where(m.Center.connector == "suanli")
        usage = []
        for month in sorted(recent_months(now, MONTHS)):  # one aggregate per month (indexed)
            start, end = month_bounds(month)
            runs, us, ph, amount = s.execute(
                select(func.count(u.id), func.sum(u.unit_seconds), func.sum(u.pflops_hours),
                       func.sum(u.amount_fen))
                .where(u.ended_at >= start, u.ended_at < end,
                       u.center_id.not_in(peer_centers))).one()
            usage.append({"month": month, "runs": int(runs or 0),
                          "unit_hours": round(int(us or 0) / 3600, 3),
                          "pflops_hours": round(float(ph or 0.0), 6),
                          "gross_fen": int(amount or 0)})
        exchanged = _exchanged(s, now - timedelta(days=30))
    return {
        "network_id": p.settings.network_id, "name": p.settings.network_name,
        "location": list(p.settings.network_location) if p.settings.network_location else None,
        "at": now.isoformat(),
        "capacity": {"total_pflops": total.total_pflops, "free_pflops": total.free_pflops,
                     "by_kind": {k: v.total_pflops for k, v in sorted(by_kind.items())}},
        "units": total.total_units, "units_in_use": total.total_units - total.free_units,
        "utilisation": round(1 - total.free_units / total.total_units, 4)
        if total.total_units else 0.0,
        "usage": usage,
        "exchanged": exchanged,
    }


def _exchanged(s: Any, since: datetime) -> list[dict[str, Any]]:
    """Jobs exchanged with each peer over the last 30 days: runs it borrowed from us (its
    platform account's usage here) and runs we borrowed from it (our runs at its center)."""
    out = []
    for peer in s.scalars(select(m.Peer).where(m.Peer.removed_at.is_(None))):
        if peer.direction == BORROWS and peer.tenant_id is not None:
            n = s.scalar(select(func.count(m.UsageRecord.id)).where(
                m.UsageRecord.tenant_id == peer.tenant_id, m.UsageRecord.ended_at >= since)) or 0
            out.append({"peer": peer.name, "network_id": peer.network_id, "lent_runs": int(n)})
        elif peer.direction == LENDS and peer.center_id is not None:
            n = s.scalar(select(func.count(m.Run.id)).where(
                m.Run.center_id == peer.center_id, m.Run.created_at >= since)) or 0
            out.append({"peer": peer.name, "network_id": peer.network_id, "borrowed_runs": int(n)})
    return out


def send(p: Platform) -> int:
    """Report to every peer we added with `--report` (our parent nodes). Returns how many took
    it; a parent that cannot be reached now gets the next one."""
    with p.db.session() as s:
        rows = s.execute(select(m.Peer, m.Center).join(m.Center, m.Center.id == m.Peer.center_id)
                         .where(m.Peer.direction == LENDS, m.Peer.report.is_(True),
                                m.Peer.removed_at.is_(None))).all()
    if not rows:
        return 0
    body = build(p)
    sent = 0
    for peer, center in rows:
        try:
            p.connector_for(center).report(body)  # type: ignore[attr-defined]
            sent += 1
        except ConnectorError as exc:
            log.info("report to %s not sent now: %s", peer.name, exc.message)
    return sent


def receive(p: Platform, actor: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """A member node's report (its platform account here): kept as its last."""
    if not actor.platform_account or actor.tenant_id is None:
        raise Forbidden("reports come from a peer platform's account (suanli peer add --report)")
    now = p.clock.now()
    with p.db.session() as s:
        row = s.scalar(select(m.PeerReport).where(m.PeerReport.tenant_id == actor.tenant_id))
        if row is None:
            row = m.PeerReport(tenant_id=actor.tenant_id, network_id=str(body["network_id"]),
                               body=body, received_at=now)
            s.add(row)
        else:
            row.network_id, row.body, row.received_at = str(body["network_id"]), body, now
        s.execute(update(m.Peer).where(
            m.Peer.tenant_id == actor.tenant_id, m.Peer.direction == BORROWS,
            m.Peer.removed_at.is_(None)).values(network_id=str(body["network_id"])))
    return {"received_at": now}


def network_view(p: Platform, actor: Principal) -> dict[str, Any]:
    """This node and the member nodes that report to it (their last reports), for the platform's
    roles: what the dashboard's network map shows."""
    actor.require(Role.PLATFORM_ADMIN, Role.AUDITOR, Role.REVIEWER)
    members = []
    with p.db.session() as s:
        for peer, report in s.execute(
                select(m.Peer, m.PeerReport)
                .join(m.PeerReport, m.PeerReport.tenant_id == m.Peer.tenant_id)
                .where(m.Peer.direction == BORROWS, m.Peer.removed_at.is_(None))
                .order_by(m.Peer.name)):
            members.append({"peer": peer.name, "received_at": report.received_at,
                            **report.body})
    own = build(p) if members else None  # (a node with no members has no network to show)
    return {"self": own, "members": members, "map": p.settings.network_map}
