"""Who leads the engine, as the API and the metrics show it: the lease row (engine/lease.py
writes it; this only reads it)."""

from __future__ import annotations

from typing import Any

from ..store import models as m
from .context import Platform


def current_leader(p: Platform) -> dict[str, Any] | None:
    """The lease's holder (its host and pid), epoch, the seconds since it was last renewed
    (`lease_age_s`) and since its term began (`leading_for_s`), and until it expires
    (`expires_in_s`, negative once expired: a standby takes over at its next try). None while no
    engine candidate holds it (never taken, or released by a clean stop)."""
    with p.db.session(fenced=False) as s:
        row = s.get(m.EngineLease, 1)
        if row is None or row.holder is None:
            return None
        holder, epoch = row.holder, row.epoch
        acquired, renewed, expires = row.acquired_at, row.renewed_at, row.expires_at
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    now = p.clock.now()
    return {
        "holder": holder,
        "host": host,
        "pid": int(pid_text) if pid_text.isdigit() else None,
        "epoch": epoch,
        "lease_age_s": round((now - renewed).total_seconds(), 3) if renewed else None,
        "leading_for_s": round((now - acquired).total_seconds(), 3) if acquired else None,
        "expires_in_s": round((expires - now).total_seconds(), 3) if expires else None,
    }


def leader_changes(p: Platform) -> int:
    """How many times the lease changed hands (its epoch: one more at every acquisition)."""
    with p.db.session(fenced=False) as s:
        row = s.get(m.EngineLease, 1)
        return row.epoch if row is not None else 0
