"""Two `suanli engine` candidates and one API replica on PostgreSQL: jobs complete; the leader
is killed with `kill -9`; the standby takes over with the next epoch and jobs go on completing,
each exactly once."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from suanli.store import models as m

from ..waiting import eventually
from .conftest import LEASE_S, RENEW_S, Cluster

pytestmark = pytest.mark.integration


def test_the_standby_takes_over_after_the_leader_is_killed(cluster: Cluster) -> None:
    c = cluster
    leader, standby, epoch = c.start_two_engines()
    with c.client() as api:
        before = c.submit(api, 6, ["sh", "-c", "echo before"], "before")
        c.wait_done(before)
        assert {r.epoch for r in c.runs()} == {epoch}  # the leader placed them all
        # The leader dies mid-stream: jobs just submitted wait for the next leader.
        during = c.submit(api, 3, ["sh", "-c", "echo during"], "during")
        leader.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.wait()
        after = c.submit(api, 3, ["sh", "-c", "echo after"], "after")
        new, new_epoch = c.leading_engine(after_epoch=epoch)
        took_over = time.monotonic() - killed
        assert new is standby and new_epoch == epoch + 1

        def placed_by_new() -> bool:
            with c.db.session() as s:
                return bool(s.scalar(select(func.count()).select_from(m.Run)
                                     .where(m.Run.epoch == new_epoch)))

        eventually(placed_by_new, timeout=60, interval=0.05, what="a placement by the new leader")
        placed = time.monotonic() - killed
        c.wait_done(during + after)
    print(f"takeover after kill -9 (lease {LEASE_S} s, renewal {RENEW_S} s): leader seen after "
          f"{took_over:.2f} s, first placement after {placed:.2f} s")
    assert took_over < LEASE_S + 2 * RENEW_S + 5  # bounded by the lease, not by luck
    # Every job ran exactly once: one run each, none lost or doubled by the takeover.
    runs = c.runs()
    per_job: dict[int, int] = {}
    for r in runs:
        per_job[r.job_id] = per_job.get(r.job_id, 0) + 1
    assert sorted(per_job) == sorted(before + during + after)
    assert set(per_job.values()) == {1}
    assert all(r.state == "completed" for r in runs), [(r.id, r.state, r.reason) for r in runs]
    with c.db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.UsageRecord)) == len(runs)
    leader_info = c.leader()
    assert leader_info is not None and leader_info["pid"] == standby.pid
    # A clean stop gives the lease up at once (no one waits for it to expire).
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(15) == 0
    assert c.leader() is None


def test_with_the_default_lease_a_killed_leader_is_replaced_before_its_lease_runs_out(
        cluster: Cluster) -> None:
    """The defaults (lease 10 s, renewal every 2 s): a standby that watched a healthy leader for
    a while never took over; after `kill -9` it places the next job well before the 10 s lease
    could have expired (the leader's liveness lock went with its connection)."""
    c = cluster
    defaults = {"SUANLI_LEASE_S": "10", "SUANLI_LEASE_RENEW_S": "2"}
    first, second = c.start_engine(**defaults), c.start_engine(**defaults)
    leader, epoch = c.leading_engine()
    standby = second if leader is first else first
    with c.client() as api:
        c.wait_done(c.submit(api, 2, ["true"], "warm"))
        time.sleep(3)  # six standby polls at 0.5 s: a live leader keeps its term
        info = c.leader()
        assert info is not None and (info["pid"], info["epoch"]) == (leader.pid, epoch)
        leader.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        after = c.submit(api, 1, ["true"], "after")

        def placed() -> bool:
            with c.db.session() as s:
                return bool(s.scalar(select(func.count()).select_from(m.Run)
                                     .where(m.Run.epoch > epoch)))

        eventually(placed, timeout=60, interval=0.05, what="a placement by the next leader")
        took = time.monotonic() - killed
        c.wait_done(after)
    print(f"takeover with the default lease: first placement {took:.2f} s after kill -9")
    assert took < 9.0, f"{took:.2f} s: the standby waited for the lease to expire"
    info = c.leader()
    assert info is not None and info["pid"] == standby.pid and info["epoch"] == epoch + 1
