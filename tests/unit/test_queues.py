"""Scheduler v2 in the engine, with real processes: committed pools, EASY, estimates, fair share,
quotas, deadlines and budgets (issue 5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from suanli.domain.enums import DeviceKind, Policy
from suanli.domain.errors import InvalidInput
from suanli.engine import Engine
from suanli.services import jobs as jobsvc
from suanli.services.estimates import queue_estimates
from suanli.services.jobs import JobInput
from suanli.services.queueing import set_quota

from ..conftest import World


def cheap(cmd: str, units: int, walltime_s: int = 60, **kw: object) -> JobInput:
    """A CPU job that wants the cheapest pool: beta/cpu (8 units on 2 nodes of 4)."""
    base: dict[str, object] = dict(name="q", command=["sh", "-c", cmd], device=DeviceKind.CPU,
                                   units=units, nodes=2 if units > 4 else 1, walltime_s=walltime_s,
                                   policy=Policy.CHEAPEST)
    base.update(kw)
    return JobInput(**base)  # type: ignore[arg-type]


def beta_cpu(world: World) -> int:
    (pool,) = [p for p in world.beta.pools if p.name == "cpu"]
    return pool.id


def state(world: World, job_id: int) -> str:
    return world.job(job_id).state


def test_easy_backfills_a_short_job_but_not_one_that_would_delay_the_head(world: World) -> None:
    a = jobsvc.submit_job(world.p, world.u1, cheap("sleep 20", 4, walltime_s=60))
    world.drive(lambda: state(world, a.id) == "RUNNING")
    head = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 8, walltime_s=60))
    short = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 4, walltime_s=30))
    long = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 4, walltime_s=600))
    world.engine.tick()
    # all three are committed to beta/cpu; the short one backfills, the long one would delay the
    # head's reservation (beta has 4 units free until a's walltime ends)
    for j in (head, short, long):
        assert world.job(j.id).target_pool_id == beta_cpu(world) or state(world, j.id) != "QUEUED"
    world.drive(lambda: state(world, short.id) in ("RUNNING", "COMPLETED"))
    assert state(world, head.id) == "QUEUED" and state(world, long.id) == "QUEUED"
    with world.p.db.session() as s:
        est = queue_estimates(world.p, s, [world.job(head.id), world.job(long.id)])
    started = world.job(a.id).started_at
    assert started is not None
    assert est[head.id].pool == "beta/cpu" and est[head.id].position == 1
    # the head starts when a's walltime ends at the latest (both from the start suanli recorded:
    # no wall-clock reading in between, so exact but for the float seconds of the planner)
    assert est[head.id].estimated_start is not None
    assert abs(est[head.id].estimated_start - (started + timedelta(seconds=60))) < timedelta(milliseconds=1)
    assert est[long.id].position == 2
    assert est[long.id].estimated_start == est[head.id].estimated_start + timedelta(seconds=60)
    jobsvc.cancel_job(world.p, world.u1, a.id)
    world.drive(lambda: state(world, head.id) in ("RUNNING", "COMPLETED", "PLACED"))
    # placed passes after it was committed, the placement still says why this pool: its nomination
    exp = jobsvc.placement_explanation(world.p, world.u1, head.id)["placements"][0]
    assert exp["candidates"] and exp["candidates"][0]["chosen"]
    assert exp["candidates"][0]["pool"] == "beta/cpu" and exp["target_pool_id"] == beta_cpu(world)


def test_fcfs_does_not_backfill(world: World) -> None:
    world.p.settings = replace(world.p.settings, queue="fcfs")
    world.engine = Engine(world.p)
    a = jobsvc.submit_job(world.p, world.u1, cheap("sleep 20", 4))
    world.drive(lambda: state(world, a.id) == "RUNNING")
    head = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 8))
    short = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 4, walltime_s=30))
    for _ in range(5):
        world.engine.tick()
    assert state(world, head.id) == "QUEUED" and state(world, short.id) == "QUEUED"
    jobsvc.cancel_job(world.p, world.u1, a.id)


def test_fair_share_puts_the_lighter_tenant_first(world: World) -> None:
    heavy = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1.5", 8))
    world.drive(lambda: state(world, heavy.id) == "COMPLETED")
    blocker = jobsvc.submit_job(world.p, world.u1, cheap("sleep 20", 8))
    world.drive(lambda: state(world, blocker.id) == "RUNNING")
    first = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 8))   # tenant 1, used a lot
    second = jobsvc.submit_job(world.p, world.u2, cheap("sleep 5", 8))  # tenant 2, used nothing
    world.engine.tick()
    with world.p.db.session() as s:
        est = queue_estimates(world.p, s, [world.job(first.id), world.job(second.id)])
    assert est[second.id].position == 1 and est[first.id].position == 2
    jobsvc.cancel_job(world.p, world.u1, blocker.id)
    world.drive(lambda: state(world, second.id) in ("RUNNING", "COMPLETED"))
    assert state(world, first.id) in ("QUEUED", "PLACED")  # the heavy tenant's job waits its turn


def test_quota_holds_a_tenants_jobs_beyond_its_units(world: World) -> None:
    with world.p.db.session() as s:
        set_quota(s, world.t1.id, "cpu", 4, world.p.clock.now())
    one = jobsvc.submit_job(world.p, world.u1, cheap("sleep 3", 4))
    two = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 4))
    other = jobsvc.submit_job(world.p, world.u2, cheap("sleep 1", 4))  # another tenant: no quota
    world.drive(lambda: state(world, one.id) == "RUNNING" and state(world, other.id) != "QUEUED")
    for _ in range(3):
        world.engine.tick()
    assert state(world, two.id) == "QUEUED"  # 4 units free at beta, but t1 holds its 4
    world.drive(lambda: state(world, two.id) in ("RUNNING", "COMPLETED"), timeout=30)
    assert world.job(two.id).started_at >= world.job(one.id).finished_at  # type: ignore[operator]
    with world.p.db.session() as s, pytest.raises(InvalidInput, match="unknown device kind"):
        set_quota(s, world.t1.id, "tpu", 4, world.p.clock.now())


def test_budget_and_deadline_are_checked_at_submission(world: World) -> None:
    # 8 units × 60 s of walltime on the fastest pool = 120 s on beta (half as fast) at 40 fen per
    # unit·h ≈ 11 fen; alpha is faster but dearer (100 fen/unit·h: 13 fen)
    with pytest.raises(InvalidInput, match=r"over the budget of ¥0\.01") as err:
        jobsvc.submit_job(world.p, world.u1, cheap("true", 8, budget_fen=1))
    assert err.value.field == "budget_fen" and err.value.detail
    with pytest.raises(InvalidInput, match=r"beta/cpu\) would cost about ¥0\.11"):
        jobsvc.submit_job(world.p, world.u1, cheap("true", 8, budget_fen=10))
    ok = jobsvc.submit_job(world.p, world.u1, cheap("true", 8, budget_fen=12))
    assert ok.budget_fen == 12
    now = world.p.clock.now()
    with pytest.raises(InvalidInput, match="no pool can finish the job by its deadline") as err:
        jobsvc.submit_job(world.p, world.u1, cheap("true", 1, walltime_s=600,
                                                   deadline=now + timedelta(seconds=120)))
    assert "earliest estimated finish" in str(err.value) and err.value.field == "deadline"
    fine = jobsvc.submit_job(world.p, world.u1, cheap("true", 1, walltime_s=60,
                                                      deadline=now + timedelta(hours=1)))
    assert fine.deadline is not None


def test_data_site_and_size_weigh_in_the_placement(world: World) -> None:
    fast = JobInput(name="d", command=["true"], device=DeviceKind.CPU, units=1, walltime_s=60,
                    policy=Policy.FASTEST)
    plain = jobsvc.submit_job(world.p, world.u1, fast)
    # 1,000 GB at beta: 800 s to move to alpha at 10 Gbit/s, so beta's slower CPUs finish first
    heavy = jobsvc.submit_job(world.p, world.u1, replace(fast, data_site="beta", data_gb=1000.0))
    world.drive(lambda: all(state(world, j.id) == "COMPLETED" for j in (plain, heavy)))
    assert world.runs(plain.id)[0].center_id == world.alpha.id  # twice as fast, no data to move
    assert world.runs(heavy.id)[0].center_id == world.beta.id
    exp = jobsvc.placement_explanation(world.p, world.u1, heavy.id)["placements"][0]
    by_pool = {c["pool"]: c for c in exp["candidates"]}
    assert by_pool["alpha/cpu"]["transfer_s"] == 800.0 and by_pool["beta/cpu"]["transfer_s"] == 0.0
    for bad, message in [(dict(data_site="nowhere", data_gb=1.0), "is not a center"),
                         (dict(data_site="beta"), "together"), (dict(data_site="beta", data_gb=0.0),
                                                                 "more than 0")]:
        with pytest.raises(InvalidInput, match=message):
            jobsvc.submit_job(world.p, world.u1, replace(fast, **bad))  # type: ignore[arg-type]


def test_a_job_just_committed_to_a_pool_gets_its_true_position_at_once(world: World) -> None:
    """Queue positions are kept for a moment (a pool may queue 10^4 jobs); a job the kept
    ranking does not know yet makes it be ranked afresh, so a new urgent job is first at once."""
    blocker = jobsvc.submit_job(world.p, world.u1, cheap("sleep 20", 8, walltime_s=60))
    world.drive(lambda: state(world, blocker.id) == "RUNNING")
    x = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 1))
    world.engine.tick()
    with world.p.db.session() as s:
        assert queue_estimates(world.p, s, [world.job(x.id)])[x.id].position == 1
    urgent = jobsvc.submit_job(world.p, world.u1, cheap("sleep 1", 1, priority=5))
    world.engine.tick()
    assert world.job(urgent.id).target_pool_id == beta_cpu(world)
    with world.p.db.session() as s:
        est = queue_estimates(world.p, s, [world.job(x.id), world.job(urgent.id)])
    assert est[urgent.id].position == 1 and est[x.id].position == 2
    jobsvc.cancel_job(world.p, world.u1, blocker.id)
