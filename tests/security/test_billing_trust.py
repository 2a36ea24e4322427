"""Billing never trusts a time a run's center (or a job) could have written: a run is billed from
no earlier than its placement to no later than when suanli saw it end, and never for longer than
its walltime and the grace its center allows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from suanli.connectors import overrun_s
from suanli.domain.clock import FixedClock
from suanli.services import jobs as jobsvc
from suanli.services.jobs import JobInput

from ..conftest import World


def _job(world: World, command: str, walltime_s: int = 120) -> int:
    from suanli.domain.enums import DeviceKind, Policy

    return jobsvc.submit_job(world.p, world.u1, JobInput(
        name="victim", command=["sh", "-c", command], device=DeviceKind.CPU, units=1,
        walltime_s=walltime_s, policy=Policy.CHEAPEST)).id


def test_an_end_ten_years_ahead_is_refused_and_billed_as_observed(world: World) -> None:
    jid = _job(world, "sleep 60")
    world.drive(lambda: world.job(jid).state == "RUNNING")
    (run,) = world.runs(jid)
    run_dir = world.p.home / "runs" / "beta" / run.run_key
    # What a lying center (or a job that could write its records) would report.
    forged = {"state": "completed", "exit_code": 0,
              "started_at": (datetime.now(UTC) - timedelta(days=365)).isoformat(),
              "ended_at": (datetime.now(UTC) + timedelta(days=3650)).isoformat(),
              "reason": "exit code 0"}
    (run_dir / "result.json").write_text(json.dumps(forged))
    world.drive(lambda: world.job(jid).state == "COMPLETED")
    after = datetime.now(UTC)
    (usage,) = world.usage(jid)
    (run,) = world.runs(jid)
    assert run.created_at <= usage.started_at and usage.ended_at <= after
    assert usage.unit_seconds <= (after - run.created_at).total_seconds() + 1
    assert "end in the future" in (run.reason or "")
    # 1 unit at 40 fen an hour on beta for seconds: a few fen, not ¥42,048
    assert usage.amount_fen <= 40


def test_a_run_is_never_billed_beyond_walltime_and_grace(world: World) -> None:
    clock = FixedClock(datetime.now(UTC))
    world.p.clock = clock
    jid = _job(world, "sleep 60", walltime_s=5)
    world.drive(lambda: world.job(jid).state == "RUNNING")
    (run,) = world.runs(jid)
    assert run.started_at is not None
    # An hour later by the platform's clock, the center says the run just ended (a center whose
    # kill failed, or a job that forged its end): the bill stops at walltime + grace.
    clock.advance(3600)
    run_dir = world.p.home / "runs" / "beta" / run.run_key
    forged = {"state": "timeout", "exit_code": None,
              "started_at": (run.started_at - timedelta(days=1)).isoformat(),
              "ended_at": clock.now().isoformat(), "reason": "walltime"}
    (run_dir / "result.json").write_text(json.dumps(forged))
    world.drive(lambda: world.job(jid).state == "TIMEOUT")
    (usage,) = world.usage(jid)
    assert usage.started_at >= run.created_at
    # beta is a local executor: 10 s from SIGTERM to the kill, and 1 s to notice
    assert usage.unit_seconds == 5 + overrun_s(world.p.connector_for(world.beta), 5) == 5 + 11
