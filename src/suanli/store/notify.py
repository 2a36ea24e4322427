"""Wake-ups across machines on PostgreSQL: LISTEN/NOTIFY on the channel `suanli_wake`.

An API replica that accepted a submission (or a cancel, a capacity change) sends `NOTIFY
suanli_wake` (`notify_wake`); the engine, wherever it runs, waits between passes in
`WakeListener.wait_for_wake(timeout)`, which returns as soon as a notification arrives and at the
timeout otherwise — a drop-in for the engine loop's `wait(timeout) -> None`. A notification sent
while the engine is in a pass is queued on its connection and ends the next wait at once; any
number of them queued end one wait, not one each. If the database cannot be reached the wait
still lasts its timeout (the engine falls back to its interval) and the listener reconnects at
the next call. Notifications are a hint, never the record: the engine reads what to do from the
tables, so a lost one costs at most one interval.

Channels are per database, not per schema: installs sharing one database (or test schemas) wake
each other's engines now and then, which costs an extra pass and nothing else.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine, make_url

if TYPE_CHECKING:  # imported when a listener is made: the API on SQLite never needs it
    import psycopg

CHANNEL = "suanli_wake"
log = logging.getLogger("suanli.store")


def notify_wake(engine: Engine, channel: str = CHANNEL) -> None:
    """Send one wake-up on `channel` (committed at once: listeners get it now)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SELECT pg_notify(%(channel)s, '')", {"channel": channel})


def libpq_url(sqlalchemy_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (`postgresql+psycopg://...`)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class WakeListener:
    """A dedicated psycopg connection that LISTENs on `channel`; `wait_for_wake(timeout)` (also
    the listener's `__call__`) blocks until a notification or the timeout. `wake()` ends a wait
    from this process (another thread, a signal handler's thread) without the database. Opened
    lazily at the first wait; `close()` drops the connection. One thread waits at a time."""

    def __init__(self, url: str, channel: str = CHANNEL, *, connect_timeout: float = 5.0) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", channel):
            raise ValueError(f"not a channel name: {channel!r}")
        self.url = libpq_url(url)
        self.channel = channel
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()  # wake() against close(): never write to a closed pipe
        self._closed = False
        self._down = False  # the last attempt failed (logged once, until it works again)

    def __call__(self, timeout: float) -> None:
        self.wait_for_wake(timeout)

    def listen(self) -> psycopg.Connection[tuple[object, ...]]:
        """Connect and LISTEN now (the first wait does it otherwise): a notification sent after
        this returns is not missed. The connection."""
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True,
                                   connect_timeout=max(2, round(self.connect_timeout)))
            try:
                conn.execute(f"LISTEN {self.channel}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def wait_for_wake(self, timeout: float) -> None:
        """Return when a NOTIFY on the channel arrives (or one arrived since the last wait), when
        `wake()` is called, or after `timeout` seconds, whichever is first."""
        import psycopg

        deadline = time.monotonic() + max(0.0, timeout)
        if self._closed:
            time.sleep(max(0.0, timeout))
            return
        try:
            conn = self.listen()
            if self._down:
                log.info("listening for wake-ups on the database again")
                self._down = False
            if self._drain(conn):
                return  # notified during the pass: go again at once
            sock = conn.fileno()
            while (remaining := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock, self._r], [], [], remaining)
                if self._r in ready:
                    self._empty_pipe()
                    return
                if not ready or self._drain(conn):
                    return
                # Readable without a notification: the server said something else (a notice) or
                # is closing the connection (a restart, pg_terminate_backend): find out which.
                conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            if not self._down:
                log.warning("cannot listen for wake-ups on the database (%s): the engine waits "
                            "its interval until it can",
                            (str(exc).strip().splitlines() or [type(exc).__name__])[0])
                self._down = True
            self._drop()
            if not self._closed:
                self._sleep(deadline)

    def wake(self) -> None:
        """End the current (or the next) wait of this listener, from any thread."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._w, b"w")
            except OSError:
                pass  # the pipe is full: a wake-up is pending already

    def close(self) -> None:
        """End a wait in progress and drop the connection; later waits just sleep their
        timeout. (The wake-up pipe is closed with the listener object.)"""
        self.wake()
        with self._lock:
            self._closed = True
        self._drop()

    def __del__(self) -> None:
        for fd in (getattr(self, "_r", None), getattr(self, "_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    @staticmethod
    def _drain(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Take every notification waiting on the connection; whether there was one."""
        import psycopg

        got = False
        for _ in conn.notifies(timeout=0):
            got = True
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("the connection to the database was lost")
        return got

    def _sleep(self, deadline: float) -> None:
        """Wait until `deadline`, unless `wake()` is called."""
        remaining = deadline - time.monotonic()
        if remaining > 0:
            ready, _, _ = select.select([self._r], [], [], remaining)
            if ready:
                self._empty_pipe()

    def _empty_pipe(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close: it is gone anyway
                pass
