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
