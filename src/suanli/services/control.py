"""What the API and the portal know of the engine: a handle to start, stop, wake and ask it, and
the statistics of its last pass.

The engine itself (`suanli.engine`) runs in the server's process or in its own; the API and the
portal import only this module, never the engine package (an import-linter contract holds it).
On PostgreSQL the engine may run on another machine: the API's wake-ups then also go out as
`NOTIFY suanli_wake` (`wake_engines`, `wakes_everywhere`), which the engine waits for between
passes (`store.notify.WakeListener`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from ..store.notify import notify_wake
from .context import Platform

log = logging.getLogger("suanli.control")


@dataclass
class PassStats:
    at: datetime | None = None
    queued: int = 0
    placed: int = 0
    finished: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    waiting_by_pool: dict[int, int] = field(default_factory=dict)


@dataclass
class EngineStatus:
    last: PassStats
    placements_total: int = 0
    running: bool = False
    pid: int | None = None
    restarts: int = 0  # times the server restarted its engine process after it died
    # "leader" while it holds the lease (engine/lease.py) with `epoch`, "standby" while it waits
    # for it; "" where no lease is kept (an engine in the server's own process).
    role: str = ""
    epoch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "running": self.running,
            "pid": self.pid,
            "restarts": self.restarts,
            "role": self.role,
            "epoch": self.epoch,
            "placements_total": self.placements_total,
            "last_pass_at": last.at.isoformat() if last.at else None,
            "queued": last.queued,
            "placed": last.placed,
            "finished": last.finished,
            "seconds": round(last.seconds, 4),
            "phases": last.phases,
            "waiting_by_pool": {str(k): v for k, v in last.waiting_by_pool.items()},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> EngineStatus:
        at = data.get("last_pass_at")
        last = PassStats(
            at=datetime.fromisoformat(at) if at else None, queued=int(data.get("queued", 0)),
            placed=int(data.get("placed", 0)), finished=int(data.get("finished", 0)),
            seconds=float(data.get("seconds", 0.0)), phases=dict(data.get("phases") or {}),
            waiting_by_pool={int(k): int(v)
                             for k, v in (data.get("waiting_by_pool") or {}).items()},
        )
        epoch = data.get("epoch")
        return EngineStatus(last, int(data.get("placements_total", 0)),
                            bool(data.get("running")), data.get("pid"),
                            int(data.get("restarts", 0)), str(data.get("role") or ""),
                            int(epoch) if epoch is not None else None)


class EngineControl(Protocol):
    """What the API needs of the engine, wherever it runs (a thread here, or its own process)."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def wake(self) -> None: ...

    def status(self) -> EngineStatus: ...


class NoEngine:
    """The handle of an application that runs no engine (tests of the API and the portal): it
    starts nothing, a wake-up goes nowhere, and its status says no engine runs."""

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None

    def wake(self) -> None:
        return None

    def status(self) -> EngineStatus:
        return EngineStatus(PassStats())


def wake_engines(p: Platform) -> None:
    """Wake the engine wherever it runs: on PostgreSQL, `NOTIFY suanli_wake` (the engine, on this
    machine or another, plans what was just committed in its next pass); on SQLite nothing (the
    engine shares this machine and is woken through its handle). Never raises: what woke it is
    committed already, and without the notification the engine finds it at its next interval."""
    if p.db.engine.dialect.name != "postgresql":
        return
    try:
        notify_wake(p.db.engine)
    except SQLAlchemyError as exc:
        log.warning("could not notify the engine (%s); it plans at its next interval",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


class WakesEverywhere:
    """An engine handle whose wake-ups also reach engines on other machines (`wake_engines`)."""

    def __init__(self, platform: Platform, inner: EngineControl) -> None:
        self.platform = platform
        self.inner = inner

    def start(self) -> None:
        self.inner.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.inner.stop(timeout)

    def wake(self) -> None:
        self.inner.wake()
        wake_engines(self.platform)

    def status(self) -> EngineStatus:
        return self.inner.status()


def wakes_everywhere(platform: Platform, engine: EngineControl) -> EngineControl:
    """`engine`, whose wake-ups also go out as NOTIFY when the database is PostgreSQL."""
    if platform.db.engine.dialect.name != "postgresql":
        return engine
    return WakesEverywhere(platform, engine)
