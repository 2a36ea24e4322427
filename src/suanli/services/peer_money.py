"""Money between peer platforms (issue 18): what a lending platform billed us, run by run; the
monthly inter-platform statements each side keeps; and their reconciliation over the API.

* The lending platform bills our `platform` account for each job it ran for us, at its prices
  (its ordinary billing: the account is a tenant there).
* We bill our tenant at our price list for that peer's pools (its price plus our margin). When
  the run has ended, `collect_charges` copies what the peer billed us for it (`PeerCharge`, the
  peer's own meter) and moves the difference between what we owe the peer and our margin
  (`platform:peer_margin`). Our payout to the peer for a month is the sum of its charges by its
  month, so both sides' statements hold the same runs and the same amounts.
* `statement(…, party="peer:NAME")`: our view of a month with a peer — what it borrowed from us
  (`lent`) and what we borrowed from it (`borrowed`); a peer's own account reads the lent view of
  itself. `reconcile(name, month)` compares our borrowed view with the peer's lent view, run by
  run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, ConnectorError, Forbidden, NotFound
from ..ledger import entries as le
from ..store import models as m
from .auth import Principal
from .billing import price_at, price_versions
from .centers import ACTIVE_RUN_STATES
from .context import Platform
from .ledger import post
from .peers import BORROWS, LENDS
from .settlement import month_bounds

log = logging.getLogger(__name__)

CHARGES_LOOKBACK = timedelta(days=45)  # runs ended longer ago are not asked about again
CHARGES_PER_ROUND = 500
RUN_PREFIX = "suanli-"  # a peer's job for our run is named suanli-<run_key>


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def collect_charges(p: Platform) -> int:
    """Copy what peers billed us for our ended runs on their centers (one round: runs not asked
    about yet, or still running there). Returns how many charges were recorded."""
    now = p.clock.now()
    with p.db.session() as s:
        rows = s.execute(
            select(m.Run.id, m.Run.run_key, m.Run.external_id, m.Center)
            .join(m.Center, m.Center.id == m.Run.center_id)
            .outerjoin(m.PeerCharge, m.PeerCharge.run_id == m.Run.id)
            .where(m.Center.connector == "suanli", m.Run.state.not_in(ACTIVE_RUN_STATES),
                   m.Run.external_id.is_not(None), m.PeerCharge.id.is_(None),
                   m.Run.created_at >= now - CHARGES_LOOKBACK)
            .order_by(m.Run.id).limit(CHARGES_PER_ROUND)).all()
    recorded = 0
    broken: set[int] = set()  # centers that failed this round: asked again next round
    for run_id, run_key, external_id, center in rows:
        if center.id in broken:
            continue
        try:
            charge = p.connector_for(center).charge(str(external_id))  # type: ignore[attr-defined]
        except ConnectorError as exc:
            log.info("peer %s: charges not read now (%s)", center.slug, exc.message)
            broken.add(center.id)
            continue
        if charge is None:
            continue  # not ended there yet (a stale attempt being cancelled)
        recorded += _record(p, run_id, run_key, center.id, charge)
    return recorded


# A peer's charge is believed up to what the run could have cost there: its units for its
# walltime and this much more (the peer's grace past the walltime, rounding), at the peer's price.
CHARGE_SLACK_S = 3600


def most_plausible(s: Session, run: m.Run, margin_bp: int) -> int:
    """The most a peer can have billed us for `run`: its units for its walltime plus
    CHARGE_SLACK_S at the peer's price when it started (our price there, less our margin)."""
    ours = price_at(price_versions(s, [run.pool_id]).get(run.pool_id),
                    run.started_at or run.created_at,
                    s.scalar(select(m.Pool.price_fen_per_unit_hour)
                             .where(m.Pool.id == run.pool_id)) or 0)
    theirs = -(-ours * 10_000 // (10_000 + margin_bp))
    return -(-run.units * (run.walltime_s + CHARGE_SLACK_S) * theirs // 3600)


def _record(p: Platform, run_id: int, run_key: str, center_id: int, charge: dict[str, Any]) -> int:
    """Keep what the peer billed us for one run. The peer's figures are believed only as far as
    they could be true: an amount over what the run could have cost there is kept at that most
    (and logged); `suanli peer reconcile` then names the run."""
    now = p.clock.now()
    with p.db.session(immediate=True) as s:
        if s.scalar(select(m.PeerCharge.id).where(m.PeerCharge.run_id == run_id)) is not None:
            return 0
        run = s.get(m.Run, run_id)
        assert run is not None
        margin = s.scalar(select(m.Peer.margin_bp).where(m.Peer.center_id == center_id)
                          .order_by(m.Peer.id.desc()).limit(1)) or 0
        amount = max(0, int(charge["amount_fen"]))
        most = most_plausible(s, run, int(margin))
        if amount > most:
            log.warning("run %s: the peer billed %s fen, more than it could cost there (%s fen): "
                        "%s kept", run_id, amount, most, most)
            amount = most
        unit_seconds = min(max(0, int(charge["unit_seconds"])),
                           run.units * (run.walltime_s + CHARGE_SLACK_S))
        billed = s.scalar(select(m.UsageRecord.amount_fen).where(m.UsageRecord.run_id == run_id))
        # (never before we placed the run, never after now: a peer's clock cannot move a run
        # into a month that has not come)
        ended: datetime = min(max(charge["ended_at"], run.created_at), now)
        started: datetime = min(max(charge["started_at"], run.created_at), ended)
        s.add(m.PeerCharge(run_id=run_id, center_id=center_id, run_key=run_key,
                           remote_job_id=int(charge["remote_job_id"]),
                           started_at=started, ended_at=ended, month=month_of(ended),
                           unit_seconds=unit_seconds, amount_fen=amount, created_at=now))
        entry = le.peer_charge(run_id, center_id, int(billed or 0), amount)
        if entry is not None:
            post(s, entry, now)
    return 1


# -- statements ---------------------------------------------------------------------------------
def lent(s: Session, tenant_id: int, month: str) -> dict[str, Any]:
    """What the platform account `tenant_id` (a peer that borrows from us) owes us for a month:
    its jobs by the month their last run ended, each with our usage of it."""
    start, end = month_bounds(month)
    u = m.UsageRecord
    rows = s.execute(select(u.job_id, u.started_at, u.ended_at, u.unit_seconds, u.amount_fen,
                            m.Job.name)
                     .join(m.Job, m.Job.id == u.job_id)
                     .where(u.tenant_id == tenant_id, u.ended_at >= start - CHARGES_LOOKBACK,
                            u.ended_at < end)).all()
    jobs: dict[int, dict[str, Any]] = {}
    for job_id, started, ended, us, amount, name in rows:
        j = jobs.setdefault(job_id, {"run_key": name[len(RUN_PREFIX):] if name.startswith(
            RUN_PREFIX) else "", "job_id": job_id, "started_at": started, "ended_at": ended,
            "unit_seconds": 0, "amount_fen": 0})
        j["started_at"], j["ended_at"] = min(j["started_at"], started), max(j["ended_at"], ended)
        j["unit_seconds"] += int(us)
        j["amount_fen"] += int(amount)
    items = sorted((j for j in jobs.values() if start <= j["ended_at"] < end and j["amount_fen"]),
                   key=lambda j: (j["ended_at"], j["job_id"]))
    return {"items": items, "runs": len(items),
            "unit_seconds": sum(j["unit_seconds"] for j in items),
            "amount_fen": sum(j["amount_fen"] for j in items)}


def borrowed(s: Session, center_id: int, month: str) -> dict[str, Any]:
    """What we owe the peer lending us the center `center_id` for a month (its charges by its
    month), with what we billed our tenants for those runs and our margin."""
    month_bounds(month)
    c = m.PeerCharge
    rows = s.execute(select(c, m.UsageRecord.amount_fen)
                     .outerjoin(m.UsageRecord, m.UsageRecord.run_id == c.run_id)
                     .where(c.center_id == center_id, c.month == month, c.amount_fen > 0)
                     .order_by(c.ended_at, c.remote_job_id)).all()
    items: list[dict[str, Any]] = [{"run_key": ch.run_key, "job_id": ch.remote_job_id, "run_id": ch.run_id,
              "started_at": ch.started_at, "ended_at": ch.ended_at,
              "unit_seconds": ch.unit_seconds, "amount_fen": ch.amount_fen,
              "billed_fen": int(billed or 0)} for ch, billed in rows]
    amount = sum(i["amount_fen"] for i in items)
    billed_total = sum(i["billed_fen"] for i in items)
    return {"items": items, "runs": len(items), "unit_seconds": sum(i["unit_seconds"] for i in items),
            "amount_fen": amount, "billed_fen": billed_total, "margin_fen": billed_total - amount}


def statement(p: Platform, actor: Principal, month: str, name: str) -> dict[str, Any]:
    """The month with the peer `name`, as `GET /settlements?party=peer:NAME` shows it: `lent` (what
    it owes us) and `borrowed` (what we owe it), each null when it is not that kind of peer. A
    peer's own account reads the lent view of itself, whatever name it gives."""
    month_bounds(month)
    out: dict[str, Any] = {"month": month, "party": f"peer:{name}", "lent": None,
                           "borrowed": None}
    with p.db.session() as s:
        if actor.platform_account and actor.tenant_id is not None:
            out["lent"] = lent(s, actor.tenant_id, month)
            return out
        if not actor.role.is_platform:
            raise Forbidden("statements between platforms are for the platform's roles (and a "
                            "peer's own account)")
        rows = list(s.scalars(select(m.Peer).where(m.Peer.name == name)
                              .order_by(m.Peer.id.desc())))
        if not rows:
            raise NotFound(f"no peer {name}")
        for peer in rows:
            if peer.direction == BORROWS and peer.tenant_id is not None and out["lent"] is None:
                out["lent"] = lent(s, peer.tenant_id, month)
            if peer.direction == LENDS and peer.center_id is not None and out["borrowed"] is None:
                out["borrowed"] = borrowed(s, peer.center_id, month)
                out["network_id"] = peer.network_id
    return out


def reconcile(p: Platform, actor: Principal, name: str, month: str) -> dict[str, Any]:
    """Our statement of what we borrowed from the peer `name` in `month` against its statement
    of what it lent us, run by run (by our run key): `same` when every run and amount agrees."""
    actor.require(Role.PLATFORM_ADMIN, Role.AUDITOR)
    month_bounds(month)
    with p.db.session() as s:
        peer = s.scalar(select(m.Peer).where(m.Peer.name == name, m.Peer.direction == LENDS)
                        .order_by(m.Peer.id.desc()))
        if peer is None or peer.center_id is None:
            raise NotFound(f"no peer {name} lending to us: reconcile runs on the platform that "
                           "borrowed (it holds the peer's token)")
        center = s.get(m.Center, peer.center_id)
        assert center is not None
        ours = borrowed(s, peer.center_id, month)
    try:
        theirs = (p.connector_for(center).statement(month) or {}).get("lent")  # type: ignore[attr-defined]
    except ConnectorError as exc:
        raise Conflict(f"peer {name} cannot be asked now: {exc.message}") from exc
    if not isinstance(theirs, dict):
        raise Conflict(f"peer {name} gave no statement of what it lent us in {month}")
    mine = {i["run_key"]: i for i in ours["items"]}
    other = {str(i.get("run_key") or f"job {i.get('job_id')}"): i for i in theirs.get("items", [])}
    differences = []
    for key in sorted(set(mine) | set(other)):
        a, b = mine.get(key), other.get(key)
        if a is None or b is None:
            differences.append({"run_key": key, "ours_fen": a and a["amount_fen"],
                                "theirs_fen": b and int(b["amount_fen"]),
                                "why": "only in our statement" if b is None
                                else "only in the peer's statement"})
        elif a["amount_fen"] != int(b["amount_fen"]) or \
                a["unit_seconds"] != int(b["unit_seconds"]):
            differences.append({"run_key": key, "ours_fen": a["amount_fen"],
                                "theirs_fen": int(b["amount_fen"]),
                                "why": f"amount or time differs (ours {a['unit_seconds']} "
                                       f"unit-s, theirs {b['unit_seconds']})"})
    return {"month": month, "peer": name, "runs": len(mine), "peer_runs": len(other),
            "ours_fen": ours["amount_fen"], "theirs_fen": int(theirs.get("amount_fen", 0)),
            "same": not differences, "differences": differences}
