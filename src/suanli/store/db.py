"""Engine and sessions. SQLite (WAL) by default; any SQLAlchemy URL via SUANLI_DATABASE_URL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
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
