"""Services + engine with real processes on local centers."""

from __future__ import annotations

import json
import os
import signal

import pytest

from suanli.domain.enums import CenterStatus, DeviceKind, Policy
from suanli.domain.errors import Conflict, Forbidden, Infeasible, NotFound
from suanli.domain.jobstate import JobState
from suanli.services import jobs as jobsvc
from suanli.services.centers import city_capacity, set_center_status
from suanli.services.jobs import JobInput
from suanli.services.usage import list_usage

from ..conftest import World


def cpu_job(cmd: str, **kw: object) -> JobInput:
    base: dict[str, object] = dict(name="t", command=["sh", "-c", cmd], device=DeviceKind.CPU,
                                   units=1, walltime_s=60)
    base.update(kw)
    return JobInput(**base)  # type: ignore[arg-type]


def test_job_runs_is_metered_once_and_has_history(world: World) -> None:
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("echo hi; sleep 1.2", units=2,
                                                       policy=Policy.CHEAPEST))
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    done = world.job(job.id)
    assert done.exit_code == 0
    (run,) = world.runs(job.id)
    assert run.center_id == world.beta.id  # the cheapest CPU pool
    # Metered exactly once, even after more passes.
    for _ in range(3):
        world.engine.tick()
    (use,) = world.usage(job.id)
    assert use.units == 2 and use.run_id == run.id
    assert 2 * 1 <= use.unit_seconds <= 2 * 4
    assert use.amount_fen == (use.unit_seconds * 40 + 1800) // 3600
    assert use.pflops_hours == pytest.approx(2 * 0.08 / 1000 * use.unit_seconds / 2 / 3600)
    states = [e.to_state for e in jobsvc.job_history(world.p, world.u1, job.id)]
    assert states == ["QUEUED", "PLACED", "RUNNING", "COMPLETED"]
    chunk = jobsvc.job_logs(world.p, world.u1, job.id)
    assert chunk.data == "hi\n" and chunk.eof is False
    assert jobsvc.job_logs(world.p, world.u1, job.id, offset=chunk.next_offset).eof


def test_failed_and_timed_out_jobs(world: World) -> None:
    bad = jobsvc.submit_job(world.p, world.u1, cpu_job("exit 3"))
    slow = jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 30", walltime_s=1))
    world.drive(lambda: world.job(bad.id).state == "FAILED"
                and world.job(slow.id).state == "TIMEOUT")
    assert world.job(bad.id).exit_code == 3
    assert len(world.usage(slow.id)) == 1  # a timed-out run is billed for what it used


def test_infeasible_job_is_refused_with_per_pool_reasons(world: World) -> None:
    with pytest.raises(Infeasible) as exc:
        jobsvc.submit_job(world.p, world.u1, cpu_job("true", units=64))
    detail = exc.value.detail
    assert {r["pool"] for r in detail} == {"alpha/cpu", "alpha/npu", "beta/cpu"}
    assert all(r["reasons"] for r in detail)


def test_cancel_queued_and_running(world: World) -> None:
    queued = jobsvc.submit_job(world.p, world.u1, cpu_job("true"))
    jobsvc.cancel_job(world.p, world.u1, queued.id)
    assert world.job(queued.id).state == "CANCELLED"
    with pytest.raises(Conflict):
        jobsvc.cancel_job(world.p, world.u1, queued.id)
    running = jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 60"))
    world.drive(lambda: world.job(running.id).state == "RUNNING")
    jobsvc.cancel_job(world.p, world.u1, running.id)
    world.drive(lambda: world.job(running.id).state == "CANCELLED")
    assert len(world.usage(running.id)) == 1


def test_tenant_isolation_and_roles(world: World) -> None:
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 0.2", units=1,
                                                       policy=Policy.FASTEST))
    with pytest.raises(NotFound):
        jobsvc.get_job(world.p, world.u2, job.id)
    with pytest.raises(NotFound):
        jobsvc.cancel_job(world.p, world.u2, job.id)
    assert jobsvc.list_jobs(world.p, world.u2).total == 0
    with pytest.raises(Forbidden):
        jobsvc.submit_job(world.p, world.admin, cpu_job("true"))
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    (run,) = world.runs(job.id)
    # The operator of alpha sees the job only if it ran on alpha.
    visible = jobsvc.list_jobs(world.p, world.op_alpha).total
    assert visible == (1 if run.center_id == world.alpha.id else 0)
    assert list_usage(world.p, world.u2).totals["runs"] == 0
    assert list_usage(world.p, world.u1).totals["runs"] == 1


def test_gang_job_never_oversubscribes_a_pool(world: World) -> None:
    # alpha/cpu (the only CPU pool in 崂山区) has 2 nodes × 4 units: of four 3-unit jobs,
    # two run (one per node) and two wait, although 2 units stay free.
    ids = [jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 1", units=3, district="崂山区")).id
           for _ in range(4)]
    world.drive(lambda: sum(world.job(i).state == "RUNNING" for i in ids) == 2)
    assert sum(world.job(i).state == "QUEUED" for i in ids) == 2
    devices: dict[int, set[int]] = {}
    for i in ids:
        for r in world.runs(i):
            used = devices.setdefault(r.pool_id, set())
            assert not used & set(r.devices)
            used |= set(r.devices)
    world.drive(lambda: all(world.job(i).state == "COMPLETED" for i in ids), timeout=30)


def test_offline_center_gets_nothing_and_capacity_drops(world: World) -> None:
    before = city_capacity(world.p, world.admin)["total"]["total_pflops"]["fp32"]
    set_center_status(world.p, world.admin, world.beta.id, CenterStatus.OFFLINE, "test")
    after = city_capacity(world.p, world.admin)
    assert after["total"]["total_pflops"]["fp32"] < before
    assert after["offline"]["total_units"] == 8
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("true", policy=Policy.CHEAPEST))
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    assert world.runs(job.id)[0].center_id == world.alpha.id


def test_lost_run_is_requeued_and_both_runs_are_metered(world: World) -> None:
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 1; echo done"))
    world.drive(lambda: world.job(job.id).state == "RUNNING")
    (first,) = world.runs(job.id)
    run_dir = world.p.home / "runs"
    shim = json.loads(next(run_dir.rglob(f"{first.run_key}/shim.json")).read_text())
    started = json.loads(next(run_dir.rglob(f"{first.run_key}/started.json")).read_text())
    os.kill(shim["pid"], signal.SIGKILL)
    os.killpg(started["pgid"], signal.SIGKILL)
    world.drive(lambda: world.job(job.id).state == "COMPLETED", timeout=30)
    runs = world.runs(job.id)
    assert [r.state for r in runs] == ["lost", "completed"]
    assert runs[0].ended_at is not None and runs[1].started_at is not None
    assert runs[0].ended_at <= runs[1].started_at  # never twice at once
    assert len(world.usage(job.id)) == 2
    states = [e.to_state for e in jobsvc.job_history(world.p, world.u1, job.id)]
    assert states == ["QUEUED", "PLACED", "RUNNING", "QUEUED", "PLACED", "RUNNING", "COMPLETED"]


def test_placement_explanation_for_queued_and_placed(world: World) -> None:
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("true", policy=Policy.FASTEST))
    exp = jobsvc.placement_explanation(world.p, world.u1, job.id)
    assert exp["state"] == "QUEUED" and exp["placements"] == []
    cands = {c["pool"]: c for c in exp["current"]["candidates"]}
    assert not cands["alpha/npu"]["feasible"]
    assert cands["alpha/cpu"]["chosen"]  # fastest: alpha's CPUs are twice as fast
    world.drive(lambda: JobState(world.job(job.id).state).is_terminal)
    exp = jobsvc.placement_explanation(world.p, world.u1, job.id)
    assert len(exp["placements"]) == 1 and exp["current"]["chosen_pool_id"] is not None


def test_the_engine_measures_intervals_on_the_platforms_clock(world: World) -> None:
    """Health checks come every `health_interval_s` of the platform's monotonic clock, not the
    machine's: on a fixed clock, one check at the start and the next only when the clock moves.
    A pass is timed on that clock too: on a fixed one it took no time."""
    from datetime import UTC, datetime

    from suanli.domain.clock import FixedClock
    from suanli.store import models as m

    clock = FixedClock(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC))
    world.p.clock = clock

    def checked() -> object:
        with world.p.db.session() as s:
            c = s.get(m.Center, world.alpha.id)
            assert c is not None
            return c.health_checked_at

    stats = world.engine.tick()
    first = checked()
    assert first is not None
    assert stats.seconds == 0.0 and set(stats.phases.values()) == {0.0}, stats
    for _ in range(3):  # real time passes, the platform's does not
        world.engine.tick()
    assert checked() == first
    clock.advance(world.p.settings.health_interval_s)
    world.engine.tick()
    assert checked() != first


def test_the_engine_process_goes_on_when_its_status_cannot_be_written(world: World) -> None:
    """A full disk (or any error) writing engine-status.json must not end the engine's loop."""
    from suanli.engine.process import STATUS_FILE, _write_status

    (world.p.home / (STATUS_FILE + ".tmp")).mkdir()  # writing the file now fails
    _write_status(world.p.home, world.engine)  # logs, does not raise
    assert not (world.p.home / STATUS_FILE).exists()


def test_a_dead_engine_is_restarted_after_a_growing_wait_reset_once_it_ran_a_while() -> None:
    from suanli.engine.process import RESTART_MAX_S, STABLE_S, Backoff

    b = Backoff(1.0)
    waits = [b.next(ran_s=0.5) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, RESTART_MAX_S, RESTART_MAX_S]
    assert b.next(ran_s=STABLE_S) == 1  # it ran a while: its death is news
    assert Backoff(300).next(0) == RESTART_MAX_S


def test_the_api_and_the_portal_load_without_the_engine() -> None:
    """The API and the portal know the engine only by its handle (services.control): building
    the application loads no module of the engine package (a later API replica runs none)."""
    import subprocess
    import sys

    code = ("import sys; from suanli.api.app import create_app; import suanli.web.app; "
            "print(sorted(m for m in sys.modules if m.startswith('suanli.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_waiting_job_moves_to_a_center_that_starts_it_now(world: World) -> None:
    """Late binding (issue 19) through the real engine: alpha's CPUs (twice as fast) are full
    for 30 s more, so a `fastest` job is committed there (30 s + 60 s beats 120 s at beta) — and
    beta, idle, starts it now. The move is in its history and its placement explanation."""
    blocker = jobsvc.submit_job(world.p, world.u1, cpu_job("sleep 20", units=8, nodes=2,
                                                           walltime_s=30, centers=["alpha"]))
    world.drive(lambda: world.job(blocker.id).state == "RUNNING")
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("echo moved", units=4, policy=Policy.FASTEST))
    exp = jobsvc.placement_explanation(world.p, world.u1, job.id)
    assert exp["current"]["message"] == "best pool now: alpha/cpu"  # by estimated finish
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    (run,) = world.runs(job.id)
    assert run.center_id == world.beta.id
    reasons = [e.reason for e in jobsvc.job_history(world.p, world.u1, job.id)]
    assert "placed on beta/cpu (moved from alpha/cpu, where it waited)" in reasons
    (placement,) = jsvc_placements(world, job.id)
    assert placement["message"] == ("moved from alpha/cpu to beta/cpu: it starts now there "
                                    "(best by fastest)")
    alpha_cpu = next(c["pool_id"] for c in placement["candidates"] if c["pool"] == "alpha/cpu")
    assert placement["moved_from_pool_id"] == alpha_cpu
    assert world.job(blocker.id).state == "RUNNING"  # the job that held alpha was not disturbed


def jsvc_placements(world: World, job_id: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = jobsvc.placement_explanation(world.p, world.u1, job_id)["placements"]
    return out
