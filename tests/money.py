"""Helpers for the money tests: a network on a fixed clock, and finished runs recorded as a center
would report them (job, placement and run rows), billed by the real billing code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from suanli.domain.clock import FixedClock
from suanli.domain.enums import Precision, Role
from suanli.services import audit
from suanli.services.billing import Billed, FinishedRun, bill_runs
from suanli.services.context import Platform
from suanli.services.ledger import balances
from suanli.store import models as m

from .conftest import World

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def fixed_world(p: Platform, start: datetime = START) -> tuple[World, FixedClock]:
    clock = FixedClock(start)
    p.clock = clock
    w = World(p)
    w.auditor = w._user("aud", Role.AUDITOR)  # type: ignore[attr-defined]
    return w, clock


def pool_id(w: World, center: m.Center, name: str) -> int:
    return next(pl.id for pl in center.pools if pl.name == name)


def finished_run(w: World, tenant_id: int, center: m.Center, pool: str, *, units: int = 4,
                 seconds: int = 3600, start: datetime | None = None, budget_fen: int | None = None,
                 job_id: int | None = None) -> FinishedRun:
    """A run that ran `seconds` on `pool` from `start` (default: the clock's now minus seconds)."""
    now = w.p.clock.now()
    start = start or now - timedelta(seconds=seconds)
    pid = pool_id(w, center, pool)
    with w.p.db.session() as s:
        user = s.scalar(select(m.User.id).where(m.User.tenant_id == tenant_id))
        assert user is not None
        if job_id is None:
            job = m.Job(tenant_id=tenant_id, user_id=user, name="r", command=["true"],
                        device_kind="cpu", units=units, walltime_s=seconds, state="COMPLETED",
                        submitted_at=start, updated_at=now, budget_fen=budget_fen)
            s.add(job)
            s.flush()
            job_id = job.id
        pl = m.Placement(job_id=job_id, pool_id=pid, center_id=center.id, decided_at=start,
                         policy="balanced", explanation={})
        s.add(pl)
        s.flush()
        attempt = 1 + len(list(s.scalars(select(m.Run.id).where(m.Run.job_id == job_id))))
        run = m.Run(job_id=job_id, placement_id=pl.id, center_id=center.id, pool_id=pid,
                    attempt=attempt, run_key=f"t-{job_id}-{attempt}", state="completed", units=units,
                    nodes=[0], devices=list(range(units)), walltime_s=seconds, created_at=start,
                    started_at=start, ended_at=start + timedelta(seconds=seconds))
        s.add(run)
        s.flush()
        return FinishedRun(run.id, job_id, tenant_id, center.id, pid, units, start,
                           start + timedelta(seconds=seconds), Precision.FP32, budget_fen)


def bill(w: World, *runs: FinishedRun) -> list[Billed]:
    with w.p.db.session() as s:
        return bill_runs(s, list(runs), w.p.clock.now())


def books(w: World) -> dict[str, int]:
    """Every account's balance (sum of postings); asserts the books balance and the log verifies."""
    with w.p.db.session() as s:
        b = balances(s)
        verdict = audit.verify(s)
    assert sum(b.values()) == 0
    assert verdict.ok, verdict.problems
    return b
