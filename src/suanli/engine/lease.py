"""Leader election and fencing: of the engine candidates sharing one database, exactly one acts.

The lease is a single row (`engine_lease`, migration 0013): its holder (`host:pid:random`), an
epoch that grows by one at every acquisition, and when it expires. A candidate takes it when it is
free or expired (`acquire`), the leader extends it every `lease_renew_s` (`renew`) and gives it up
on a clean stop (`release`). Time is the platform's clock (`p.clock.now()`).

Fencing: `install` makes `check` run at the start of every unit of work of the engine's database
(`Database.fence`), inside its transaction. `check` reads the lease row and raises `Deposed` unless
this candidate still holds it with the same epoch and it has not expired. On PostgreSQL it reads
the row `FOR KEY SHARE`: a takeover locks the row `FOR UPDATE`, which waits until every unit that
passed the check has ended, so what a leader commits is committed before the next epoch begins.
A renewal (`FOR NO KEY UPDATE`, only the times change) does not wait for them. On SQLite the
fence runs inside the unit's transaction too; a unit that writes is `BEGIN IMMEDIATE`, which
serialises writers, and one engine per data directory holds `engine.lock` besides.

A paused leader (SIGSTOP, a long GC pause) may hold the row's share lock in a transaction it does
not finish; on PostgreSQL the engine's connections therefore have
`idle_in_transaction_session_timeout` set to the lease: the server ends such a transaction once it
has been idle that long, and the takeover proceeds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, create_engine, event, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from ..services.context import Platform
from ..services.replicas import new_replica_id
from ..store import models as m
from ..store.db import CONNECT_TIMEOUT_S

log = logging.getLogger("suanli.engine")

LEASE_ID = 1
EPOCH_KEY = "lease_epoch"  # Session.info: the epoch a fenced unit of work was checked under
# The liveness lock (PostgreSQL): a session advisory lock keyed by (this name in the schema in use,
# the epoch). The leader of epoch E holds (KEY, E) on a connection of its own for as long as it
# leads; the server drops it the moment that connection ends, e.g. when the process is killed.
LIVE_KEY = "hashtext('suanli-lease:' || coalesce(current_schema(), ''))"
LIVENESS_APP = "suanli-engine-liveness"  # its application_name in pg_stat_activity
STANDBY_POLL_S = 0.5  # how often a standby on PostgreSQL looks (at most; lease_renew_s if shorter)
LOG_EVERY_S = 10.0  # the keeper's database errors: one line per this many seconds


class Deposed(Exception):
    """This engine candidate does not lead (any more): what it was doing must not be committed."""


def session_epoch(s: Session) -> int | None:
    """The lease epoch a fenced unit of work was checked under (None: not fenced)."""
    epoch = s.info.get(EPOCH_KEY)
    return int(epoch) if epoch is not None else None


class Lease:
    """One candidate's side of the lease. `epoch` is the epoch it holds, None while it stands by."""

    def __init__(self, platform: Platform, holder: str | None = None) -> None:
        self.p = platform
        self.holder = holder or new_replica_id()  # its name in the replicas list too
        self.epoch: int | None = None
        self.expires_at: datetime | None = None
        self.changed = threading.Condition()  # notified when it starts or stops leading
        # PostgreSQL: the connection that holds the liveness lock (the keeper thread's alone) and
        # the epoch whose lock it holds.
        self._live: Connection | None = None
        self._live_engine: Engine | None = None
        self._live_epoch: int | None = None
        self._failing_since: float | None = None
        self._logged_at = 0.0

    # -- state

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def wait_leading(self, timeout: float) -> bool:
        with self.changed:
            if self.epoch is None:
                self.changed.wait(timeout)
            return self.epoch is not None

    def _set(self, epoch: int | None, expires_at: datetime | None) -> None:
        with self.changed:
            was = self.epoch
            self.epoch, self.expires_at = epoch, expires_at
            if was != epoch:
                self.changed.notify_all()

    def _lose(self, epoch: int, why: str) -> None:
        """Stop leading, once per epoch lost."""
        with self.changed:
            if self.epoch != epoch:
                return
            self.epoch, self.expires_at = None, None
            self.changed.notify_all()
        log.warning("deposed from epoch %d: %s; standing by", epoch, why)

    # -- the row

    @property
    def _pg(self) -> bool:
        return self.p.db.engine.dialect.name == "postgresql"

    def _row(self, s: Session, **lock: Any) -> m.EngineLease:
        """The lease row, locked as asked (PostgreSQL; SQLite's immediate unit serialises).
        Created when missing (a database made from the models rather than the migrations)."""
        if self._pg:
            # Waiting for a lock longer than a renewal interval helps nobody: try again later.
            ms = int(self.p.settings.lease_renew_s * 1000)
            s.execute(text(f"SET LOCAL lock_timeout = {ms}"))
        row = s.scalars(select(m.EngineLease).where(m.EngineLease.id == LEASE_ID)
                        .with_for_update(**lock)).one_or_none()
        if row is None:
            row = m.EngineLease(id=LEASE_ID, holder=None, epoch=0)
            s.add(row)
            s.flush()
        return row

    def acquire(self) -> bool:
        """Take the lease if it is free or expired (the epoch grows by one), or renew it if this
        candidate holds it. True when this candidate leads afterwards.

        On PostgreSQL a lease held and not expired is also taken when its holder is gone: nobody
        holds that epoch's liveness lock any more (`_holder_gone`), so a standby need not wait
        for the lease to run out after the leader was killed."""
        if self.leading:
            return self.renew()
        now = self.p.clock.now()
        gone: int | None = None
        if self._pg:
            self._sync_live()  # deposed by a fence: its old epoch's lock goes now
            with self.p.db.session(fenced=False) as s:
                seen = s.execute(select(m.EngineLease.holder, m.EngineLease.epoch,
                                        m.EngineLease.expires_at)
                                 .where(m.EngineLease.id == LEASE_ID)).one_or_none()
            if seen is not None and seen.holder is not None and seen.expires_at is not None \
                    and seen.expires_at > now:
                if not self._holder_gone(seen.epoch):
                    return False  # held by a live leader: no row lock taken, no waiting
                gone = seen.epoch
        try:
            with self.p.db.session(immediate=True, fenced=False) as s:
                row = self._row(s)  # FOR UPDATE: waits for the fenced units of the old epoch
                held = row.holder is not None and row.expires_at is not None \
                    and row.expires_at > now
                if held and row.epoch != gone and not self._dead_here(row.holder or ""):
                    return False
                previous, how = row.holder, ("gone" if held else "expired")
                row.holder = self.holder
                row.epoch += 1
                row.acquired_at = row.renewed_at = now
                row.expires_at = now + timedelta(seconds=self.p.settings.lease_s)
                epoch, expires = row.epoch, row.expires_at
                if self._pg:
                    # before the commit: from the moment the epoch exists, its lock is held
                    self._hold_live(epoch)
        except OperationalError as exc:  # e.g. lock_timeout: an old epoch's unit still runs
            log.info("lease not taken this time: %s", str(exc).splitlines()[0])
            self._sync_live()
            return False
        finally:
            if gone is not None:
                self._unlock(gone)
        self._set(epoch, expires)
        log.warning("leading: epoch %d (lease %s before, by %s)", epoch,
                    "free" if previous is None else how, previous or "nobody")
        return True

    def _dead_here(self, holder: str) -> bool:
        """On SQLite (one machine, one engine per data directory under `engine.lock`): the
        holder was a process of this host that is gone (a server killed with `kill -9` and
        restarted), so its lease need not run out first. Taking a live holder's lease would
        still be safe (fencing does not depend on it), only a needless change of leader."""
        if self._pg:
            return False
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False

    def renew(self) -> bool:
        """Extend the lease, if this candidate still holds it with its epoch and it has not
        expired; otherwise it is deposed. True while it leads."""
        epoch = self.epoch
        if epoch is None:
            return False
        now = self.p.clock.now()
        with self.p.db.session(immediate=True, fenced=False) as s:
            row = self._row(s, key_share=True)  # FOR NO KEY UPDATE: fenced units go on
            if row.holder != self.holder or row.epoch != epoch:
                why = f"the lease is {row.holder or 'free'}'s, epoch {row.epoch}"
            elif row.expires_at is None or row.expires_at <= now:
                why = "the lease expired before it was renewed"
            else:
                why = ""
                row.renewed_at = now
                row.expires_at = now + timedelta(seconds=self.p.settings.lease_s)
                expires = row.expires_at
        if why:
            self._lose(epoch, why)
            self._sync_live()
            return False
        with self.changed:
            if self.epoch == epoch:
                self.expires_at = expires
        if self._pg and self._live_epoch != epoch:
            self._hold_live(epoch)  # its connection was lost (e.g. the database restarted)
        return True

    def release(self) -> None:
        """Give the lease up (a clean stop): the next candidate need not wait for it to expire."""
        epoch = self.epoch
        if epoch is None:
            self._close_live()
            return
        self._set(None, None)
        try:
            with self.p.db.session(immediate=True, fenced=False) as s:
                row = self._row(s)
                if row.holder == self.holder and row.epoch == epoch:
                    row.holder = None
                    row.expires_at = self.p.clock.now()
        except SQLAlchemyError as exc:
            log.warning("could not release the lease (it expires by itself): %s",
                        str(exc).splitlines()[0])
            return
        finally:
            self._close_live()
        log.info("lease released (epoch %d)", epoch)

    # -- the liveness lock (PostgreSQL)

    def _conn(self) -> Connection:
        """The liveness connection: of its own (no pool), in autocommit, so it is never idle in a
        transaction and its locks live exactly as long as it does."""
        if self._live is None or self._live.closed or self._live.invalidated:
            self._live = None
            self._live_epoch = None
            if self._live_engine is None:
                self._live_engine = create_engine(
                    self.p.db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                    connect_args={"application_name": LIVENESS_APP,
                                  **({} if "connect_timeout" in make_url(self.p.db.url).query
                                     else {"connect_timeout": CONNECT_TIMEOUT_S})})
            self._live = self._live_engine.connect()
        return self._live

    def _try_lock(self, epoch: int) -> bool:
        """Try the lock of `epoch` on the liveness connection; a connection the server ended
        (a restart, pg_terminate_backend) is replaced once."""
        for again in (False, True):
            try:
                return bool(self._conn().exec_driver_sql(
                    f"SELECT pg_try_advisory_lock({LIVE_KEY}, %(e)s)", {"e": epoch}).scalar())
            except OperationalError:
                self._close_live()
                if again:
                    raise
        raise AssertionError("unreachable")

    def _unlock(self, epoch: int) -> None:
        live = self._live
        if live is None or live.closed or live.invalidated:
            return
        try:
            live.exec_driver_sql(f"SELECT pg_advisory_unlock({LIVE_KEY}, %(e)s)", {"e": epoch})
        except SQLAlchemyError:
            self._close_live()
        if self._live_epoch == epoch:
            self._live_epoch = None

    def _holder_gone(self, epoch: int) -> bool:
        """Whether the leader of `epoch` is gone: its liveness lock is free (taken here; the
        caller unlocks it). A leader that lost its own connection (a database restart) counts as
        gone too: the takeover is safe, the fence deposes it."""
        return self._try_lock(epoch)

    def _hold_live(self, epoch: int) -> None:
        """Hold the liveness lock of `epoch` (this candidate leads it) and no other."""
        try:
            self._sync_live()
            if self._try_lock(epoch):
                self._live_epoch = epoch
            else:  # a standby has it just now: it is taking over, the fence will tell
                log.warning("the liveness lock of epoch %d is taken by another candidate", epoch)
        except SQLAlchemyError as exc:
            log.warning("cannot hold the liveness lock: %s", str(exc).splitlines()[0])
            self._close_live()

    def _sync_live(self) -> None:
        """Let go of the liveness lock of an epoch this candidate no longer leads."""
        held = self._live_epoch
        if held is not None and held != self.epoch:
            self._unlock(held)

    def _close_live(self) -> None:
        live, self._live, self._live_epoch = self._live, None, None
        if live is not None:
            try:
                live.invalidate()  # really closed, whatever it held released by the server
                live.close()
            except SQLAlchemyError:
                pass

    # -- the fence

    def check(self, s: Session) -> None:
        """The fence, at the start of a unit of work: raise `Deposed` unless this candidate still
        holds the lease with its epoch and it has not expired. On PostgreSQL the row stays share
        locked until the unit ends, so the answer holds until its commit."""
        epoch = self.epoch
        if epoch is None:
            raise Deposed("this engine is a standby: it does not hold the lease")
        row = s.execute(select(m.EngineLease.holder, m.EngineLease.epoch,
                               m.EngineLease.expires_at)
                        .where(m.EngineLease.id == LEASE_ID)
                        .with_for_update(read=True, key_share=True)).one_or_none()
        now = self.p.clock.now()
        if row is None or row.holder != self.holder or row.epoch != epoch:
            why = (f"the lease is {row.holder or 'free'}'s, epoch {row.epoch}" if row is not None
                   else "the lease row is gone")
        elif row.expires_at is None or row.expires_at <= now:
            why = "the lease expired"
        else:
            s.info[EPOCH_KEY] = epoch
            return
        self._lose(epoch, why)
        raise Deposed(f"epoch {epoch} is over: {why}")

    def install(self) -> None:
        """Fence every unit of work of the platform's database; on PostgreSQL, have the server end
        any of its transactions idle longer than the lease (see the module's doc)."""
        db = self.p.db
        if self._pg:
            ms = int(self.p.settings.lease_s * 1000)

            @event.listens_for(db.engine, "connect")
            def _idle_limit(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute(f"SET idle_in_transaction_session_timeout = {ms}")
                cur.close()
                dbapi_conn.commit()

            db.engine.dispose()  # connections opened before get the setting too
        db.fence = self.check

    # -- the candidate's loop

    def keep(self, stop: threading.Event) -> None:
        """Until `stop`: renew while leading (every `lease_renew_s`), else try to take the lease
        (on PostgreSQL every STANDBY_POLL_S at most: a cheap read and a try of the liveness
        lock, so a killed leader is replaced within about that)."""
        while not stop.is_set():
            epoch, expires = self.epoch, self.expires_at
            if epoch is not None and expires is not None and expires <= self.p.clock.now():
                self._lose(epoch, "the lease expired before it could be renewed")
            try:
                if self.leading:
                    self.renew()
                else:
                    self.acquire()
                if self._failing_since is not None:
                    log.warning("lease: the database answers again (after %.0f s)",
                                time.monotonic() - self._failing_since)
                    self._failing_since = None
            except SQLAlchemyError as exc:  # the database away: the fence stops any pass
                self._failed(exc)
            if self._pg:
                self._sync_live()
            wait = self.p.settings.lease_renew_s
            if self._pg and not self.leading:
                wait = min(wait, STANDBY_POLL_S)
            stop.wait(wait)

    def _failed(self, exc: SQLAlchemyError) -> None:
        """Log a failed renewal or try: the first, then one line per LOG_EVERY_S."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_at = now
        log.warning("lease: %s", str(exc).splitlines()[0])
