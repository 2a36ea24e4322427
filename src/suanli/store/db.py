"""Engine and sessions. SQLite (WAL) by default; any SQLAlchemy URL via SUANLI_DATABASE_URL."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

# How long a new connection to PostgreSQL may take before it counts as unreachable (seconds;
# libpq's `connect_timeout`, unless the URL sets its own): a database host that answers nothing
# (no "connection refused") makes requests answer 503 after this, not hang.
CONNECT_TIMEOUT_S = 5
# SQLSTATEs that say the server cannot serve this connection now: class 08 (connection
# exception), 57P01 admin shutdown (`pg_ctl stop -m fast`), 57P02 crash shutdown, 57P03 cannot
# connect now (starting up, shutting down, in recovery).
_DOWN_SQLSTATES = ("57P01", "57P02", "57P03")


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # pre-ping: a pooled connection that died with a database restart is replaced at its
        # next checkout, so a replica serves again by itself once the database is back.
        kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
        if url.startswith("postgresql") and "connect_timeout" not in make_url(url).query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached just now (refused, restarting, shutting
    down, the connection lost), as opposed to a statement that failed (a constraint, a lock
    timeout, bad SQL): what a client should retry in a moment."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # the dialect saw a disconnect
    sqlstate = getattr(exc.orig, "sqlstate", False)  # psycopg's errors; never SQLite's
    if sqlstate is None:
        # psycopg's own errors, which the server did not send: connection refused, a timeout,
        # "server closed the connection unexpectedly"
        import psycopg

        return isinstance(exc.orig, (psycopg.OperationalError, psycopg.InterfaceError))
    return isinstance(sqlstate, str) and (sqlstate.startswith("08")
                                          or sqlstate in _DOWN_SQLSTATES)


def cause(exc: BaseException) -> str:
    """One line for the log of why the database failed: the driver's error and its first line
    (for the server's log only: it may name the host and port)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    first = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {first[0]}" if first else type(orig).__name__


def log_failure(log: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled under `message`: one warning line when the database is
    unavailable (restarting, out of reach: the next pass tries again, nothing to debug), else
    with its traceback."""
    exc = sys.exc_info()[1]
    if exc is not None and unavailable(exc):
        log.warning(message + " (the database is unavailable: %s)", *args, cause(exc))
    else:
        log.exception(message, *args)


class Database:
    """An engine and its session factory. One per process; passed down, never global."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # This process's immediate units queue here for their turn (first come, first served)
        # rather than in SQLite's busy handler, which polls with growing sleeps; other processes
        # still wait there.
        self._immediate = threading.Lock()
        # The engine leader's fence (engine/lease.py), run at the start of every unit of work of
        # this database: it raises when this process no longer leads, so nothing of the unit is
        # committed. None for the API's database (it never leads anything).
        self.fence: Callable[[Session], None] | None = None
        # The key that seals the audit log (services/audit.py), set by the Platform that uses this
        # database; every session carries it in `info["audit_key"]`.
        self.audit_key: bytes | None = None

    def set_audit_key(self, key: bytes) -> None:
        self.audit_key = key
        self.sessions.configure(info={"audit_key": key})

    @contextmanager
    def session(self, *, immediate: bool = False, fenced: bool = True) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error.

        `immediate`: a unit that reads a row's state and writes it back (a job's, a run's), which
        must be one serialised step. On SQLite it takes the database's write lock before its first
        read (`BEGIN IMMEDIATE`): pysqlite otherwise runs the reads outside any transaction and
        begins one only before the first write, so two units could both read QUEUED and both
        write. On PostgreSQL the unit locks the rows it reads instead (see `store.locks`). Other
        units keep the default, so that reads stay concurrent. Immediate units do not nest.

        `fenced`: run `fence` first, in the unit's transaction (only the lease itself opts out)."""
        serialise = immediate and self.engine.dialect.name == "sqlite"
        with self._immediate if serialise else nullcontext(), self.sessions() as s:
            try:
                if serialise:
                    s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                if fenced and self.fence is not None:
                    self.fence(s)
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from .migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
