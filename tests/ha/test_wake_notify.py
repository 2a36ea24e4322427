"""Wake-ups across machines: `NOTIFY suanli_wake` from the API, `WakeListener.wait_for_wake` in
the engine (store/notify.py), against a real PostgreSQL and a real `suanli serve`."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from suanli.config import Settings
from suanli.services.context import Platform
from suanli.services.control import NoEngine, WakesEverywhere, wake_engines, wakes_everywhere
from suanli.store.db import Database
from suanli.store.notify import CHANNEL, WakeListener, notify_wake

from ..conftest import fresh_postgres_url, kill_runs
from ..integration.conftest import Server, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(postgres: dict[str, str]) -> Iterator[tuple[str, Engine]]:
    url = fresh_postgres_url(postgres, "wake")
    engine = create_engine(url)
    yield url, engine
    engine.dispose()


def channel() -> str:
    """A channel of the test's own: other tests on this server send on `suanli_wake`."""
    return f"wake_test_{uuid.uuid4().hex[:8]}"


def timed(wait: WakeListener, timeout: float) -> float:
    t0 = time.monotonic()
    wait(timeout)
    return time.monotonic() - t0


def notify_later(engine: Engine, name: str, after: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(after), notify_wake(engine, name)))
    t.start()
    return t


def test_a_notify_from_another_connection_ends_the_wait_well_before_the_timeout(
        pg: tuple[str, Engine]) -> None:
    url, engine = pg
    name = channel()
    listener = WakeListener(url, name)
    try:
        listener.listen()
        sender = notify_later(engine, name, 0.3)
        took = timed(listener, 20.0)
        sender.join()
        assert 0.25 <= took < 5.0, took
        # Nothing more came: the next wait lasts its timeout.
        assert 0.9 <= timed(listener, 1.0) < 3.0
    finally:
        listener.close()


def test_without_a_notify_the_wait_returns_at_its_timeout(pg: tuple[str, Engine]) -> None:
    url, engine = pg
    listener = WakeListener(url, channel())
    try:
        took = timed(listener, 1.0)
        assert 0.95 <= took < 3.0, took
        notify_wake(engine, channel())  # another channel's wake-up is not ours
        assert 0.45 <= timed(listener, 0.5) < 3.0
    finally:
        listener.close()


def test_wake_ups_sent_during_a_pass_end_the_next_wait_once(pg: tuple[str, Engine]) -> None:
    """What the engine sees: notifications sent while it runs a pass are waiting when it comes
    back; they end one wait at once, however many there were."""
    url, engine = pg
    name = channel()
    listener = WakeListener(url, name)
    try:
        listener.listen()
        # Five wake-ups of one pass, committed together (as separate commits they could reach
        # the listener's socket on either side of its first read on a loaded machine).
        with engine.begin() as conn:
            for i in range(5):
                conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": name, "p": str(i)})
        time.sleep(0.3)  # all of them at the listener before it looks
        assert timed(listener, 20.0) < 2.0
        assert timed(listener, 0.5) >= 0.45
    finally:
        listener.close()


def test_a_wake_from_this_process_ends_the_wait(pg: tuple[str, Engine]) -> None:
    url, _engine = pg
    listener = WakeListener(url, channel())
    try:
        threading.Timer(0.3, listener.wake).start()
        assert timed(listener, 20.0) < 5.0
        listener.close()
        assert timed(listener, 0.3) >= 0.25  # a closed listener just waits out its timeout
    finally:
        listener.close()


def test_an_unreachable_database_costs_the_interval_not_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    listener = WakeListener(f"postgresql+psycopg://x:y@127.0.0.1:{port}/none", channel())
    try:
        for _ in range(2):
            took = timed(listener, 0.5)
            assert 0.45 <= took < 5.0, took
    finally:
        listener.close()


def test_crafted_channel_names_are_refused() -> None:
    for bad in ["x; DROP TABLE jobs", "Wake", "", "a" * 64, "中文"]:
        with pytest.raises(ValueError):
            WakeListener("postgresql+psycopg://x@127.0.0.1/x", bad)


def test_the_api_wakes_engines_on_postgresql_only(pg: tuple[str, Engine], home: Path) -> None:
    url, _engine = pg
    sqlite = Platform(db=Database(f"sqlite:///{home / 'w.db'}"), settings=Settings.from_env())
    inner = NoEngine()
    assert wakes_everywhere(sqlite, inner) is inner
    wake_engines(sqlite)  # on SQLite: nothing to send, and no error
    on_pg = Platform(db=Database(url), settings=Settings.from_env())
    try:
        handle = wakes_everywhere(on_pg, inner)
        assert isinstance(handle, WakesEverywhere)
        listener = WakeListener(url)  # the real channel
        try:
            listener.listen()
            handle.wake()
            assert timed(listener, 20.0) < 5.0
        finally:
            listener.close()
    finally:
        on_pg.db.dispose()
        sqlite.db.dispose()


@pytest.fixture
def server_on_pg(postgres: dict[str, str]) -> Iterator[tuple[Server, str]]:
    url = fresh_postgres_url(postgres, "wakeapi")
    srv = Server(Path(tempfile.mkdtemp(prefix="suanli-wake.")), free_port(), database_url=url,
                 extra_env={"SUANLI_SCHEDULER_INTERVAL": "30"})
    srv.start()
    try:
        yield srv, url
    finally:
        srv.stop()
        kill_runs(srv.home)
        shutil.rmtree(srv.home, ignore_errors=True)


def test_a_submission_through_a_replica_notifies_suanli_wake(
        server_on_pg: tuple[Server, str]) -> None:
    """An engine on another machine (here: a listener in the test) hears of a submission at once,
    not at its next interval."""
    srv, url = server_on_pg
    listener = WakeListener(url)
    assert listener.channel == CHANNEL == "suanli_wake"
    try:
        listener.listen()
        listener(0.0)  # anything sent before the submission is not what we wait for
        with srv.api() as api:
            r = api.post("/api/v1/jobs", json={"command": ["true"], "name": "wake",
                                                "resources": {"device": "cpu", "units": 1}})
            assert r.status_code == 201, r.text
            t0 = time.monotonic()
        assert timed(listener, 20.0) < 5.0, "no NOTIFY after a submission"
        assert time.monotonic() - t0 < 5.0
        # A request that changes nothing the engine plans (a read) sends nothing.
        httpx.get(f"{srv.url}/api/v1/health", timeout=5)
        assert timed(listener, 1.0) >= 0.95
    finally:
        listener.close()


def test_a_listener_whose_connection_was_killed_listens_again(pg: tuple[str, Engine]) -> None:
    """The database dropped the listener's connection (a restart, a failover, an admin): the wait
    lasts its timeout without an error, and the next one listens on a new connection."""
    url, engine = pg
    name = channel()
    listener = WakeListener(url, name)
    try:
        pid = listener.listen().info.backend_pid
        with engine.connect() as c:
            c.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        assert 0.45 <= timed(listener, 0.5) < 5.0
        new = listener.listen()
        assert new.info.backend_pid != pid
        sender = notify_later(engine, name, 0.2)
        assert timed(listener, 20.0) < 5.0
        sender.join()
    finally:
        listener.close()
