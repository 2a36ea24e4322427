"""The engine's lease and its fence (engine/lease.py), on SQLite and on a real PostgreSQL, with a
fixed clock: who may take it, when, with which epoch, and that a deposed leader commits nothing."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from suanli.config import Settings
from suanli.domain.clock import FixedClock
from suanli.domain.enums import DeviceKind
from suanli.engine import Engine
from suanli.engine.lease import Deposed, Lease
from suanli.services.context import Platform
from suanli.services.jobs import JobInput, submit_job
from suanli.services.leader import current_leader
from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import World, database_url, kill_runs
from ..waiting import eventually


@dataclass
class Two:
    """Two engine candidates (each its own database handle, as two processes would have) and a
    third, unfenced handle (the API's), on one database and one fixed clock."""

    clock: FixedClock
    a: Lease
    b: Lease
    api: Platform
    url: str


def _platform(url: str, home: Path, clock: FixedClock, **kw: float) -> Platform:
    settings = Settings(home=home, database_url=url, lease_s=kw.get("lease_s", 10.0),
                        lease_renew_s=kw.get("lease_renew_s", 2.0), health_interval_s=3600)
    return Platform(db=Database(url), settings=settings, clock=clock)


@pytest.fixture(params=["sqlite", "postgresql"])
def two(request: pytest.FixtureRequest) -> Iterator[Two]:
    home = Path(tempfile.mkdtemp(prefix="suanli-lease."))
    url = database_url(request, home, "lease")
    Database(url).upgrade()
    clock = FixedClock(datetime(2026, 12, 4, 8, 0, tzinfo=UTC))
    pa, pb, api = (_platform(url, home, clock) for _ in range(3))
    a, b = Lease(pa, "host-a:1:aaaa"), Lease(pb, "host-b:2:bbbb")
    a.install()
    b.install()
    yield Two(clock, a, b, api, url)
    for lease in (a, b):
        lease.release()  # closes the liveness connection too
    for p in (pa, pb, api):
        p.db.dispose()
    shutil.rmtree(home, ignore_errors=True)


def _row(p: Platform) -> m.EngineLease:
    with p.db.session() as s:
        row = s.get(m.EngineLease, 1)
        assert row is not None
        return row


def test_a_free_lease_is_taken_with_epoch_one_and_refused_to_others_while_held(two: Two) -> None:
    assert two.a.acquire() and two.a.leading and two.a.epoch == 1
    assert not two.b.acquire() and not two.b.leading
    row = _row(two.api)
    assert (row.holder, row.epoch) == ("host-a:1:aaaa", 1)
    assert row.expires_at == two.clock.now().replace(second=10)
    two.clock.advance(9.9)
    assert not two.b.acquire()  # 0.1 s before it expires: still a's
    assert two.a.acquire() and two.a.epoch == 1  # its holder only renews it: same epoch
    two.clock.advance(9.9)
    assert not two.b.acquire()


def test_an_expired_lease_is_taken_with_the_next_epoch_and_its_old_holder_is_deposed(
        two: Two) -> None:
    assert two.a.acquire()
    two.clock.advance(10)  # a did not renew in time
    assert two.b.acquire() and two.b.epoch == 2
    assert not two.a.renew() and not two.a.leading  # its renewal comes too late
    assert two.b.renew()
    info = current_leader(two.api)
    assert info is not None and info["host"] == "host-b" and info["pid"] == 2
    assert info["epoch"] == 2 and info["expires_in_s"] == 10.0
    # a comes back as a candidate: refused while b holds it; after b stops cleanly it is free
    # at once, and a takes it with the next epoch.
    assert not two.a.acquire()
    two.b.release()
    assert not two.b.leading and current_leader(two.api) is None
    assert two.a.acquire() and two.a.epoch == 3


def test_a_lease_not_renewed_is_lost_even_by_its_holder_s_own_renewal(two: Two) -> None:
    assert two.a.acquire()
    two.clock.advance(10.5)
    assert not two.a.renew() and not two.a.leading
    assert two.a.acquire() and two.a.epoch == 2  # taken again: a new term, a new epoch


def test_the_fence_lets_the_leader_write_and_commits_nothing_after_a_takeover(two: Two) -> None:
    with pytest.raises(Deposed, match="standby"), two.a.p.db.session():
        pass
    assert two.a.acquire()
    with two.a.p.db.session(immediate=True) as s:
        s.add(m.SignInFailure(key="written-by", at=two.clock.now()))
    two.clock.advance(11)
    assert two.b.acquire() and two.b.epoch == 2
    # The deposed leader wakes up and tries to write: its unit raises before anything is
    # committed, and from then on it is a standby (every unit refused without asking).
    with pytest.raises(Deposed, match="epoch 1 is over"), two.a.p.db.session(immediate=True) as s:
        s.add(m.SignInFailure(key="late", at=two.clock.now()))
    assert not two.a.leading
    with pytest.raises(Deposed), two.a.p.db.session():
        pass
    keys = _keys(two.api)  # the API's handle is never fenced
    assert "written-by" in keys and "late" not in keys


def test_the_fence_refuses_a_leader_whose_lease_ran_out_unrenewed(two: Two) -> None:
    """Nobody took over yet, but the leader's own lease expired (its renewals were stuck): it
    must stop writing as if deposed, since a standby may take the lease any moment."""
    assert two.a.acquire()
    two.clock.advance(10)
    with pytest.raises(Deposed, match="expired"), two.a.p.db.session():
        pass


def test_a_takeover_waits_for_the_old_epoch_s_open_unit_of_work(two: Two) -> None:
    """PostgreSQL: a unit that passed the fence keeps the lease row share locked, so the next
    epoch cannot begin before it ended: the check stays true until its commit. A renewal does
    not wait for it."""
    if two.a.p.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE instead")
    assert two.a.acquire()
    with two.a.p.db.session() as s:
        s.add(m.SignInFailure(key="slow", at=two.clock.now()))
        t0 = time.monotonic()
        assert two.a.renew()  # FOR NO KEY UPDATE: does not wait for the unit
        assert time.monotonic() - t0 < 1.0
        two.clock.advance(11)
        t0 = time.monotonic()
        assert not two.b.acquire()  # waits (lock_timeout = one renewal interval), then gives up
        assert time.monotonic() - t0 >= 1.9
    assert two.b.acquire() and two.b.epoch == 2
    assert "slow" in _keys(two.api)


def _keys(p: Platform) -> set[str]:
    with p.db.session() as s:
        return set(s.scalars(select(m.SignInFailure.key)))


def test_a_paused_leader_s_open_transaction_is_ended_by_the_server(two: Two) -> None:
    """PostgreSQL: a leader paused inside a unit of work (SIGSTOP) would hold the takeover off
    for ever; its connections have idle_in_transaction_session_timeout = the lease, so the server
    ends that transaction and the standby gets the lease."""
    if two.a.p.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's idle_in_transaction_session_timeout")
    home = Path(tempfile.mkdtemp(prefix="suanli-lease."))
    fast = _platform(two.url, home, two.clock, lease_s=1.0, lease_renew_s=0.5)
    a = Lease(fast, "host-a:3:cccc")
    a.install()
    try:
        two.clock.advance(100)
        assert a.acquire()
        with pytest.raises(DBAPIError), fast.db.session() as s:
            s.add(m.SignInFailure(key="paused", at=two.clock.now()))
            s.flush()
            time.sleep(1.5)  # "paused" past the lease inside the transaction
            s.execute(select(1))
        two.clock.advance(2)
        assert two.b.acquire()
        assert "paused" not in _keys(two.api)
    finally:
        fast.db.dispose()
        shutil.rmtree(home, ignore_errors=True)


def test_a_candidate_s_keeper_takes_a_free_lease_and_renews_it(two: Two) -> None:
    stop = threading.Event()
    keeper = threading.Thread(target=two.a.keep, args=(stop,), daemon=True)
    keeper.start()
    try:
        assert two.a.wait_leading(5.0)
        assert two.a.epoch == 1
    finally:
        stop.set()
        keeper.join(5)
    two.a.release()
    assert _row(two.api).holder is None


def test_runs_carry_the_epoch_that_placed_them_and_a_deposed_engine_places_nothing(
        world: World) -> None:
    api = world.p  # submissions and reads: the API's handle, never fenced
    clock = FixedClock(datetime(2026, 12, 4, 8, 0, tzinfo=UTC))

    def candidate(holder: str) -> Lease:
        lease = Lease(Platform(db=Database(api.settings.database_url), settings=api.settings,
                               clock=clock), holder)
        lease.install()
        return lease

    a, b = candidate("host-a:1:aaaa"), candidate("host-b:2:bbbb")
    assert a.acquire()
    engine = Engine(a.p)
    first = submit_job(api, world.u1, JobInput(name="t", command=["sleep", "30"],
                                               device=DeviceKind.CPU, units=1, walltime_s=60))
    engine.tick()
    runs = world.runs(first.id)
    assert len(runs) == 1 and runs[0].epoch == 1
    # b takes over (a's lease expired): a's next pass ends at its first unit of work, and the
    # job submitted meanwhile is not placed by it.
    clock.advance(10)
    assert b.acquire() and b.epoch == 2
    second = submit_job(api, world.u1, JobInput(name="t", command=["true"], device=DeviceKind.CPU,
                                                units=1, walltime_s=60))
    with pytest.raises(Deposed):
        engine.tick()
    assert world.runs(second.id) == [] and world.job(second.id).state == "QUEUED"
    # b's engine places it, under epoch 2.
    Engine(b.p).tick()
    runs = world.runs(second.id)
    assert len(runs) == 1 and runs[0].epoch == 2
    for lease in (a, b):
        lease.p.db.dispose()
    kill_runs(api.home)


def test_health_and_metrics_show_the_leader_from_the_database(two: Two) -> None:
    from fastapi.testclient import TestClient

    from suanli.api.app import create_app

    with TestClient(create_app(two.api, run_engine=False)) as client:
        body = client.get("/api/v1/health").json()
        assert body["leader"] is None  # nobody ever took the lease
        assert "suanli_leader_changes_total 0.0" in client.get("/metrics").text
        assert two.a.acquire()
        two.clock.advance(10)
        assert two.b.acquire()  # epoch 2
        two.clock.advance(1.5)
        leader = client.get("/api/v1/health").json()["leader"]
        assert leader == {"holder": "host-b:2:bbbb", "host": "host-b", "pid": 2, "epoch": 2,
                          "lease_age_s": 1.5, "leading_for_s": 1.5, "expires_in_s": 8.5}
        text = client.get("/metrics").text
        assert "suanli_leader_changes_total 2.0" in text
        assert "suanli_lease_age_seconds 1.5" in text


def test_an_impostor_claiming_the_current_epoch_is_refused_by_the_fence(two: Two) -> None:
    """A process that knows the leader's epoch, host and pid (all shown by /api/v1/health, no
    token needed) but not its random part cannot write as the leader, nor renew or release its
    lease."""
    assert two.b.acquire()
    impostor = Lease(two.a.p, "host-b:2:0000")  # the same host and pid, another random part
    impostor.install()
    impostor.epoch = two.b.epoch  # it claims the term without acquiring it
    with pytest.raises(Deposed, match="host-b:2:bbbb's, epoch 1"), impostor.p.db.session() as s:
        s.add(m.SignInFailure(key="impostor", at=two.clock.now()))
    impostor.epoch = two.b.epoch
    assert not impostor.renew()
    impostor.epoch = two.b.epoch
    impostor.release()
    row = _row(two.api)
    assert (row.holder, row.epoch) == ("host-b:2:bbbb", 1) and "impostor" not in _keys(two.api)


def test_on_sqlite_the_lease_of_a_dead_process_of_this_host_is_taken_at_once(two: Two) -> None:
    """`make run` killed with kill -9 and started again: its new engine need not wait for the old
    one's lease to run out (on SQLite one engine runs per data directory, under engine.lock)."""
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    sqlite = two.b.p.db.engine.dialect.name == "sqlite"
    init = Lease(two.a.p, f"{host}:1:init")  # pid 1 is alive: its lease is respected
    assert init.acquire()
    assert not two.b.acquire()
    init.release()
    ghost = Lease(two.a.p, f"{host}:{dead.pid}:dead")
    assert ghost.acquire()
    assert two.b.acquire() is sqlite  # on PostgreSQL it waits for the lease to run out


def _pg_only(two: Two) -> None:
    if two.a.p.db.engine.dialect.name != "postgresql":
        pytest.skip("the liveness lock is PostgreSQL's (SQLite runs one engine per data "
                    "directory and checks the holder's pid instead)")


def _live_pid(lease: Lease) -> int:
    assert lease._live is not None
    return int(lease._live.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_leader_gone_is_replaced_before_its_lease_runs_out(two: Two) -> None:
    """The leader's process dies (its liveness connection with it): the standby's next try takes
    over at once, with the next epoch, though the lease has 10 s to run; the old leader, were it
    to write after all, is fenced."""
    _pg_only(two)
    assert two.a.acquire() and two.a.epoch == 1
    for _ in range(3):  # a healthy leader is never replaced, however often the standby looks
        assert not two.b.acquire()
        two.clock.advance(1)
        assert two.a.renew()
    two.a._close_live()  # what the server sees of kill -9: the connection ends
    assert two.b.acquire() and two.b.epoch == 2  # the clock did not move: no expiry involved
    assert _row(two.api).holder == "host-b:2:bbbb"
    with pytest.raises(Deposed, match="epoch 1 is over"), two.a.p.db.session(immediate=True) as s:
        s.add(m.SignInFailure(key="from-the-grave", at=two.clock.now()))
    assert "from-the-grave" not in _keys(two.api)
    # The new leader holds its own epoch's lock: the old one, back as a standby, cannot take over.
    assert not two.a.acquire() and two.b.renew() and two.b.epoch == 2


def test_a_leader_whose_liveness_connection_is_terminated_is_deposed_cleanly(two: Two) -> None:
    """An operator (or an attacker with database access) ends the leader's liveness connection
    with pg_terminate_backend while its process lives: the standby takes over (the leader looks
    gone); the old leader's next write is refused, its renewal deposes it, and from then on it is
    a standby that does not fight back."""
    _pg_only(two)
    assert two.a.acquire()
    with two.api.db.session() as s:
        assert s.execute(text("SELECT pg_terminate_backend(:pid)"),
                         {"pid": _live_pid(two.a)}).scalar()
    assert eventually(lambda: two.b.acquire(), timeout=10, what="the standby taking over")
    assert two.b.epoch == 2
    with pytest.raises(Deposed), two.a.p.db.session(immediate=True) as s:
        s.add(m.SignInFailure(key="after-terminate", at=two.clock.now()))
    assert not two.a.renew() and not two.a.leading
    for _ in range(3):
        assert not two.a.acquire()
        assert two.b.renew() and two.b.epoch == 2
    assert "after-terminate" not in _keys(two.api)


def test_a_leader_that_won_by_expiry_is_not_replaced_when_the_paused_one_wakes(two: Two) -> None:
    """a pauses (SIGSTOP) holding epoch 1's lock; b takes over by expiry and holds epoch 2's.
    a wakes, is deposed, lets its old lock go and stands by: b keeps leading (the lock is per
    epoch, so a's old lock says nothing of b)."""
    _pg_only(two)
    assert two.a.acquire()
    two.clock.advance(10)
    assert two.b.acquire() and two.b.epoch == 2
    assert not two.a.renew()
    assert two.a._live_epoch is None  # epoch 1's lock let go
    for _ in range(3):
        assert not two.a.acquire()
        assert two.b.renew() and two.b.epoch == 2


def test_the_leader_takes_its_lock_again_after_its_connection_was_lost(two: Two) -> None:
    """The database restarted (every connection lost) but nobody took over: the leader's next
    renewal holds its epoch's lock again, so the fast path keeps working for the standby."""
    _pg_only(two)
    assert two.a.acquire()
    two.a._close_live()
    assert two.a.renew() and two.a._live_epoch == 1
    assert not two.b.acquire()
    two.a._close_live()
    assert two.b.acquire() and two.b.epoch == 2
