"""Alembic, configured in code so the server can upgrade its own schema on start.

Several replicas may start at once against one PostgreSQL database: each upgrades (and seeds the
demo) under a PostgreSQL advisory lock (`startup_lock`), so the first does the work and the others
wait for it, then find the schema at head and the demo seeded. On SQLite one host owns the file:
the lock is a no-op there and SQLite's own write lock serialises what little could overlap."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The advisory lock's first key, "SUAN" (0x5355414E); the second is a hash of the lock's name and
# the schema in use, so that databases (or test schemas) on one server do not wait for each other.
LOCK_CLASS = 0x5355414E
log = logging.getLogger("suanli.store")


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
        # configparser interpolates '%': a URL with %-escapes (a password, libpq options) doubles them
        url = engine.url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, one replica at a time (see `startup_lock`)."""
    with startup_lock(engine, "migrate"):
        command.upgrade(alembic_config(engine), revision)


@contextmanager
def startup_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock named `name` (session level, on a connection of its own,
    held for the block): replicas starting together run the block one after another. A replica
    that dies in the block loses its connection, and with it the lock. On SQLite: no lock."""
    if engine.dialect.name != "postgresql":
        yield
        return
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    key = f"{LOCK_CLASS}, hashtext(%(name)s || ':' || coalesce(current_schema(), ''))"
    released = False
    try:
        if not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})", {"name": name}).scalar():
            log.info("another replica holds the %s lock on this database; waiting for it", name)
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})", {"name": name})
        try:
            yield
        finally:
            released = bool(conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})",
                                                 {"name": name}).scalar())
    finally:
        if not released:
            conn.invalidate()  # never hand a connection that may hold the lock back to the pool
        conn.close()
