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

from ..domain.enums import CenterStatus, Precision, Role
from ..domain.errors import ConnectorError, Forbidden
from ..store import models as m
from .auth import Principal
from .centers import used_units_by_pool
from .context import Platform
from .peers import BORROWS, LENDS

log = logging.getLogger(__name__)

MONTHS = 12


def _months(now: datetime) -> list[str]:
    return [f"{now.year + (now.month - 1 - k) // 12}-{(now.month - 1 - k) % 12 + 1:02d}"
            for k in range(MONTHS)]


def build(p: Platform) -> dict[str, Any]:
    """This platform's report: its own compute only (not what it borrows from peers)."""
    now = p.clock.now()
    total: dict[str, float] = defaultdict(float)
    free: dict[str, float] = defaultdict(float)
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    units = used = 0
    with p.db.session() as s:
        in_use = used_units_by_pool(s)
        rows = s.execute(select(m.Pool, m.Center).join(m.Center).where(
            m.Center.connector != "suanli", m.Center.status != CenterStatus.OFFLINE.value,
            m.Pool.withdrawn_at.is_(None))).all()
        for pool, center in rows:
            busy = min(pool.total_units, in_use.get(pool.id, 0))
            units += pool.total_units
            used += busy
            for prec in Precision:
                peak = pool.pflops(prec)
                total[prec.value] += peak
                free[prec.value] += peak * (pool.total_units - busy) / max(1, pool.total_units)
                by_kind[center.kind][prec.value] += peak
        months = _months(now)
        start = datetime.fromisoformat(f"{months[-1]}-01T00:00:00+00:00")
        u = m.UsageRecord
        peer_centers = select(m.Center.id).where(m.Center.connector == "suanli")
        usage = {k: [0, 0, 0.0, 0] for k in months}
        for ended, us, ph, amount in s.execute(
                select(u.ended_at, u.unit_seconds, u.pflops_hours, u.amount_fen)
                .where(u.ended_at >= start, u.center_id.not_in(peer_centers))):
            key = ended.strftime("%Y-%m")
            if key in usage:
                row = usage[key]
                row[0] += 1
                row[1] += int(us)
                row[2] += float(ph)
                row[3] += int(amount)
        exchanged = _exchanged(s, now - timedelta(days=30))
    return {
        "network_id": p.settings.network_id, "name": p.settings.network_name,
        "location": list(p.settings.network_location) if p.settings.network_location else None,
        "at": now.isoformat(),
        "capacity": {"total_pflops": {k: round(v, 6) for k, v in total.items()},
                     "free_pflops": {k: round(v, 6) for k, v in free.items()},
                     "by_kind": {k: {q: round(x, 6) for q, x in v.items()}
                                 for k, v in sorted(by_kind.items())}},
        "units": units, "units_in_use": used,
        "utilisation": round(used / units, 4) if units else 0.0,
        "usage": [{"month": k, "runs": v[0], "unit_hours": round(v[1] / 3600, 3),
                   "pflops_hours": round(v[2], 6), "gross_fen": v[3]}
                  for k, v in sorted(usage.items())],
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
