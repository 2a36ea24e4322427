"""Versioned price lists: a pool's price from a date on. A run is billed at the price valid when it
started; a new price never changes the past (it may start now or later, not earlier). The pool's
`price_fen_per_unit_hour` is the price valid now (what the scheduler ranks by), kept current by
`sync_current`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import InvalidInput, NotFound
from ..store import models as m
from . import audit
from .auth import Principal
from .billing import price_at, price_versions
from .centers import managed_center
from .context import Platform

MAX_PRICE_FEN = 10**9  # ten million yuan per unit-hour
GRACE = timedelta(minutes=5)  # clocks differ a little: "now" may be a few minutes ago


def _row(r: m.PriceList) -> dict[str, Any]:
    return {"id": r.id, "pool_id": r.pool_id, "price_fen_per_unit_hour": r.price_fen_per_unit_hour,
            "valid_from": r.valid_from, "note": r.note, "created_at": r.created_at}


def _pool(s: Session, actor: Principal, pool_id: int) -> m.Pool:
    """A pool whose prices the actor may read: any, except that a center operator sees only its
    own center's (another center's pool is "not found", as one that does not exist)."""
    pool = s.get(m.Pool, pool_id)
    if pool is None or (actor.role is Role.CENTER_OPERATOR and pool.center_id != actor.center_id):
        raise NotFound(f"no pool {pool_id}")
    return pool


def list_prices(p: Platform, actor: Principal, pool_id: int) -> list[dict[str, Any]]:
    """A pool's price versions, oldest first: tenants and the platform's roles read every pool's
    (the prices are the market), a center operator only its own center's."""
    with p.db.session() as s:
        _pool(s, actor, pool_id)
        rows = s.scalars(select(m.PriceList).where(m.PriceList.pool_id == pool_id)
                         .order_by(m.PriceList.valid_from))
        return [_row(r) for r in rows]


def set_price(p: Platform, actor: Principal, pool_id: int, price_fen: int,
              valid_from: datetime | None = None, note: str = "") -> dict[str, Any]:
    """A new price for a pool from `valid_from` (default: now) on: its center's operator or a
    platform admin."""
    now = p.clock.now()
    if type(price_fen) is not int or not 0 <= price_fen <= MAX_PRICE_FEN:
        raise InvalidInput(f"a price is 0 to {MAX_PRICE_FEN} fen per unit-hour",
                           field="price_fen_per_unit_hour")
    if valid_from is None:
        valid_from = now
    if valid_from.tzinfo is None:
        raise InvalidInput("valid_from needs a time zone (e.g. 2026-12-01T00:00:00Z)", field="valid_from")
    if valid_from < now - GRACE:
        raise InvalidInput("a price cannot start in the past: runs already started keep the price "
                           "they started at", field="valid_from")
    if len(note) > 200:
        raise InvalidInput("a note has at most 200 characters", field="note")
    with p.db.session() as s:
        pool = _pool(s, actor, pool_id)
    managed_center(p, actor, pool.center_id)
    with p.db.session() as s:
        existing = s.scalar(select(m.PriceList).where(m.PriceList.pool_id == pool_id,
                                                      m.PriceList.valid_from == valid_from))
        if existing is not None:
            existing_price = existing.price_fen_per_unit_hour
            if existing_price != price_fen:
                raise InvalidInput(f"pool {pool_id} already has a price from {valid_from.isoformat()} "
                                   f"({existing_price} fen); choose another start", field="valid_from")
            return _row(existing)
        row = m.PriceList(pool_id=pool_id, price_fen_per_unit_hour=price_fen, valid_from=valid_from,
                          note=note, created_at=now, created_by=actor.user_id)
        s.add(row)
        s.flush()
        audit.record(s, "price.set", f"pool:{pool_id}",
                     {"price_fen_per_unit_hour": price_fen, "valid_from": valid_from.isoformat(),
                      "note": note}, now, actor)
        sync_current(s, now, [pool_id])
        out = _row(row)
    p.topology_changed()
    return out


def sync_current(s: Session, now: datetime, pool_ids: list[int] | None = None) -> int:
    """Make each pool's current price the version valid now; returns how many changed."""
    pools = list(s.scalars(select(m.Pool) if pool_ids is None
                           else select(m.Pool).where(m.Pool.id.in_(pool_ids))))
    versions = price_versions(s, [pl.id for pl in pools])
    changed = 0
    for pool in pools:
        current = price_at(versions.get(pool.id), now, pool.price_fen_per_unit_hour)
        if current != pool.price_fen_per_unit_hour:
            pool.price_fen_per_unit_hour = current
            changed += 1
    return changed
