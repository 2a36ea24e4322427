"""The control plane's processes as the database knows them (`replicas`, migration 0014).

Every API replica, all-in-one server and engine candidate writes its own row at start and every
`heartbeat_s` (`Heartbeat`), and deletes it on a clean stop; a process killed with `kill -9`
stops writing and drops out of `seen` after `replica_seen_s`. Rows not written for a day are
removed by whichever process writes next. What the rows say is each process's own report, used
only for display (`suanli status`, `/metrics`): nothing decides by it (the engine's lease does).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from .. import __version__
from ..domain.enums import Role
from ..store import models as m
from .auth import Principal
from .context import Platform
from .leader import current_leader

log = logging.getLogger("suanli.replicas")

ROLES = ("api", "serve", "engine")
PRUNE_AFTER = timedelta(days=1)
LOG_EVERY_S = 60.0  # a failing heartbeat: one line per this many seconds


def new_replica_id() -> str:
    """This process's name: `host:pid:random` (the random part tells a restarted process with a
    reused pid from the one before); an engine candidate's is also its name on the lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Heartbeat:
    """One process's row: written by `beat` (at `start` and then every `heartbeat_s` in a
    thread), removed by `stop`. `report` adds a role's own fields (an engine: `leading`,
    `epoch`, `last_pass_at`, `last_pass_ms`)."""

    def __init__(self, platform: Platform, role: str, *, replica_id: str | None = None,
                 report: Callable[[], dict[str, Any]] | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self.p = platform
        self.role = role
        self.id = replica_id or new_replica_id()
        self.report = report
        self.started_at = platform.clock.now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._logged_at = 0.0

    def beat(self) -> bool:
        """Write this process's row now. False (and logged, at most once a minute) when the
        database cannot take it: the heartbeat never stops the process."""
        now = self.p.clock.now()
        extra = self.report() if self.report is not None else {}
        try:
            with self.p.db.session(fenced=False) as s:
                row = s.get(m.Replica, self.id)
                if row is None:
                    row = m.Replica(id=self.id, role=self.role, host=socket.gethostname(),
                                    pid=os.getpid(), version=__version__,
                                    started_at=self.started_at, seen_at=now)
                    s.add(row)
                row.seen_at = now
                for key in ("leading", "epoch", "last_pass_at", "last_pass_ms"):
                    if key in extra:
                        setattr(row, key, extra[key])
                s.execute(delete(m.Replica).where(m.Replica.seen_at < now - PRUNE_AFTER))
        except SQLAlchemyError as exc:
            mono = time.monotonic()
            if not self._failing or mono - self._logged_at >= LOG_EVERY_S:
                log.warning("heartbeat not written: %s", str(exc).splitlines()[0])
                self._logged_at = mono
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat written again")
            self._failing = False
        return True

    def start(self) -> None:
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="suanli-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.p.settings.heartbeat_s):
            self.beat()

    def stop(self) -> None:
        """Stop beating and remove the row (a clean stop: it is not listed a minute longer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            with self.p.db.session(fenced=False) as s:
                s.execute(delete(m.Replica).where(m.Replica.id == self.id))
        except SQLAlchemyError as exc:
            log.warning("heartbeat row not removed (it ages out): %s", str(exc).splitlines()[0])


def seen(p: Platform, within_s: float | None = None) -> list[dict[str, Any]]:
    """The processes that wrote their row within `within_s` (default `replica_seen_s`), engines
    first, then by start; `age_s` is the seconds since their last heartbeat."""
    window = p.settings.replica_seen_s if within_s is None else within_s
    now = p.clock.now()
    with p.db.session(fenced=False) as s:
        rows = list(s.scalars(select(m.Replica)
                              .where(m.Replica.seen_at >= now - timedelta(seconds=window))))
    order = {"engine": 0, "serve": 1, "api": 2}
    rows.sort(key=lambda r: (order.get(r.role, 3), r.started_at, r.id))
    return [{
        "id": r.id, "role": r.role, "host": r.host, "pid": r.pid, "version": r.version,
        "started_at": r.started_at, "seen_at": r.seen_at,
        "age_s": round(max(0.0, (now - r.seen_at).total_seconds()), 3),
        "leading": r.leading, "epoch": r.epoch,
        "last_pass_at": r.last_pass_at, "last_pass_ms": r.last_pass_ms,
    } for r in rows]


def control_plane(p: Platform, who: Principal) -> dict[str, Any]:
    """The whole control plane for the platform admin: the processes seen within
    `replica_seen_s`, the engine's leader (the lease) and its last pass (its own heartbeat), and
    every center's health as the engine's checks left it."""
    who.require(Role.PLATFORM_ADMIN)
    procs = seen(p)
    leader = current_leader(p)
    last_pass = None
    if leader is not None:
        mine = next((r for r in procs if r["id"] == leader["holder"]), None)
        if mine is not None and mine["last_pass_at"] is not None:
            last_pass = {"at": mine["last_pass_at"], "ms": mine["last_pass_ms"],
                         "by": mine["id"]}
    with p.db.session(fenced=False) as s:
        centers = [{
            "slug": c.slug, "status": c.status, "status_reason": c.status_reason,
            "status_source": c.status_source, "health_failures": c.health_failures,
            "health_detail": c.health_detail, "health_checked_at": c.health_checked_at,
            "health_ok_at": c.health_ok_at, "offline_since": c.offline_since,
        } for c in s.scalars(select(m.Center).order_by(m.Center.id))]
    return {"at": p.clock.now(), "window_s": p.settings.replica_seen_s, "replicas": procs,
            "leader": leader, "last_pass": last_pass, "centers": centers}
