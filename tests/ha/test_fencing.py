"""Fencing: the leader is paused (SIGSTOP) past its lease while it works, the standby takes over,
and the old leader is resumed (SIGCONT) in the middle of what it was doing: nothing it does from
then on is committed (asserted on the database), and it stands by."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from sqlalchemy import select

from suanli.store import models as m

from ..waiting import eventually
from .conftest import LEASE_S, Cluster

pytestmark = pytest.mark.integration


def test_a_paused_leader_resumed_after_a_takeover_commits_nothing(cluster: Cluster) -> None:
    c = cluster
    old, standby, epoch = c.start_two_engines()
    ids: list[int] = []
    with c.client() as api:
        ids += c.submit(api, 4, ["sh", "-c", "sleep 0.2"], "warm")
        c.wait_done(ids)
        # A stream of submissions keeps the leader busy; it is paused in the middle of it.
        stream_done = threading.Event()

        def stream() -> None:
            with c.client() as api2:
                for i in range(15):
                    ids.extend(c.submit(api2, 1, ["sh", "-c", "sleep 0.3"], f"stream{i}"))
                    time.sleep(0.05)
            stream_done.set()

        streamer = threading.Thread(target=stream)
        streamer.start()
        time.sleep(0.4)
        old.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        streamer.join(60)
        assert stream_done.is_set()
        new, new_epoch = c.leading_engine(after_epoch=epoch)
        assert new is standby and new_epoch == epoch + 1
        assert time.monotonic() - paused >= LEASE_S - 0.5  # it waited for the lease to run out
        ids += c.submit(api, 4, ["sh", "-c", "sleep 0.2"], "after")
        c.wait_done(ids)
        # What the old epoch committed, before it was paused.
        with c.db.session() as s:
            old_runs = set(s.scalars(select(m.Run.id).where(m.Run.epoch == epoch)))
            events = s.scalar(select(m.JobEvent.id).order_by(m.JobEvent.id.desc()).limit(1))
        # The old leader wakes up in the middle of its pass, with decisions in memory.
        old.send_signal(signal.SIGCONT)
        eventually(lambda: f"deposed from epoch {epoch}" in c.engine_log(old), timeout=30,
                   what="the old leader noticing it was deposed")
        time.sleep(2 * LEASE_S)  # time enough to act, were it still acting
        assert old.poll() is None  # still running: a standby now
        log = c.engine_log(old)
        assert "standing by" in log
        with c.db.session() as s:
            assert set(s.scalars(select(m.Run.id).where(m.Run.epoch == epoch))) == old_runs
            assert set(s.scalars(select(m.Run.epoch))) <= {epoch, new_epoch}
            # Every job event since was the new leader's: its runs' ends and starts only.
            late = list(s.scalars(select(m.JobEvent).where(m.JobEvent.id > (events or 0))))
        assert late == [], [(e.job_id, e.reason) for e in late]
        leader = c.leader()
        assert leader is not None and leader["pid"] == new.pid and leader["epoch"] == new_epoch
        # Every job ran exactly once.
        per_job: dict[int, int] = {}
        for r in c.runs():
            per_job[r.job_id] = per_job.get(r.job_id, 0) + 1
        assert sorted(per_job) == sorted(ids) and set(per_job.values()) == {1}
        # Its clean stop does not release a lease that is not its own.
        old.send_signal(signal.SIGTERM)
        assert old.wait(15) == 0
        leader = c.leader()
        assert leader is not None and leader["epoch"] == new_epoch
