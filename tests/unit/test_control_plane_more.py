"""More of the control plane's rows (services/replicas.py), on SQLite: an engine standby's
heartbeat is written although its database's fence refuses every unit of work; the heartbeat and
the window must fit together (SUANLI_HEARTBEAT_S < SUANLI_REPLICA_SEEN_S); a row stays listed
for the whole window after its last heartbeat and not a moment longer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from suanli.config import Settings
from suanli.domain.clock import FixedClock
from suanli.services.context import Platform
from suanli.services.replicas import Heartbeat, seen
from suanli.store import models as m


def test_a_standby_heartbeat_is_not_fenced(platform: Platform) -> None:
    """A standby's database has the lease's fence installed (engine/lease.py), which refuses
    every fenced unit of work: the heartbeat is written all the same, and removed on a stop."""
    def fence(_s: Session) -> None:
        raise RuntimeError("a standby: fenced units must not run")

    platform.db.fence = fence
    try:
        hb = Heartbeat(platform, "engine", replica_id="ctl-3:3990:0badf00d", report=lambda: {
            "leading": False, "epoch": None, "last_pass_at": None, "last_pass_ms": None})
        assert hb.beat() is True
        with pytest.raises(RuntimeError, match="fenced units must not run"), \
                platform.db.session() as s:  # the fence is live
            s.execute(text("SELECT 1"))
        with platform.db.session(fenced=False) as s:
            row = s.get(m.Replica, "ctl-3:3990:0badf00d")
            assert row is not None and (row.role, row.leading, row.epoch) == ("engine", False, None)
        hb.stop()
        with platform.db.session(fenced=False) as s:
            assert s.scalars(select(m.Replica.id)).all() == []
    finally:
        platform.db.fence = None


def test_a_row_is_listed_for_the_whole_window_and_no_longer(platform: Platform) -> None:
    p = Platform(db=platform.db, settings=replace(platform.settings, replica_seen_s=60.0),
                 clock=FixedClock(datetime(2026, 12, 5, 8, 0, tzinfo=UTC)))
    killed = Heartbeat(p, "api")  # beats once, then never again (kill -9)
    assert killed.beat()
    assert isinstance(p.clock, FixedClock)
    p.clock.advance(59.9)
    assert [r["id"] for r in seen(p)] == [killed.id]
    assert seen(p)[0]["age_s"] == pytest.approx(59.9)
    p.clock.advance(0.2)
    assert seen(p) == []
    assert [r["id"] for r in seen(p, within_s=120)] == [killed.id]  # the row is still there


@pytest.mark.parametrize(("beat", "window"), [("60", "60"), ("90", "60"), ("5", "2")])
def test_a_heartbeat_as_slow_as_the_window_is_refused(
        monkeypatch: pytest.MonkeyPatch, beat: str, window: str) -> None:
    monkeypatch.setenv("SUANLI_HEARTBEAT_S", beat)
    monkeypatch.setenv("SUANLI_REPLICA_SEEN_S", window)
    with pytest.raises(ValueError, match="SUANLI_HEARTBEAT_S must be less than "
                                         "SUANLI_REPLICA_SEEN_S"):
        Settings.from_env()
    monkeypatch.setenv("SUANLI_HEARTBEAT_S", "0.5")
    s = Settings.from_env()
    assert (s.heartbeat_s, s.replica_seen_s) == (0.5, float(window))
