"""Closing a run: record its end, meter and bill it once, and move its job on (to its end, or
back to the queue). Every path that ends a run comes here: a center's answer, a refused or
cancelled submit, a failover."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..connectors import RunStatus, overrun_s
from ..domain.enums import RunState
from ..domain.jobstate import JobState
from ..domain.model import billable_span
from ..services.billing import BUDGET_STOP, bill_runs, finished_run
from ..services.context import Platform
from ..services.jobs import transition
from ..store import models as m

log = logging.getLogger("suanli.engine")

CLOCK_SKEW = timedelta(seconds=5)  # a center's clock may be this far ahead before it is doubted
RUN_TO_JOB = {
    RunState.COMPLETED: JobState.COMPLETED,
    RunState.FAILED: JobState.FAILED,
    RunState.CANCELLED: JobState.CANCELLED,
    RunState.TIMEOUT: JobState.TIMEOUT,
}


class RunCloser:
    """The engine's part that ends runs."""
    def __init__(self, platform: Platform) -> None:
        self.p = platform

    def close_run(
        self, s: Session, job: m.Job, run: m.Run, state: RunState, status: RunStatus,
        now: datetime,
    ) -> None:
        """Record the run's end, meter it and move its job on. The caller holds the job's and the
        run's locks (`store.locks.lock_run` in an immediate session)."""
        run.state = state.value
        reason = status.reason or state.value
        if status.ended_at is not None and status.ended_at > now + CLOCK_SKEW:
            log.warning("run %s: center %s reported an end in the future (%s); billed to when "
                        "suanli saw it end", run.id, run.center_id, status.ended_at.isoformat())
            reason += "; the center reported an end in the future: refused"
        run.reason = reason[:500]
        run.exit_code = status.exit_code
        started = run.started_at or status.started_at
        if (run.started_at is not None and status.started_at is not None
                and status.started_at <= run.started_at):
            # the center's own start (the one its end is measured against, same precision);
            # billable_span keeps it no earlier than the placement
            started = status.started_at
        if started is not None:
            run.started_at, run.ended_at = billable_span(
                started, status.ended_at or now, placed_at=run.created_at, seen_at=now,
                limit_s=self._billable_limit_s(s, run))
        else:
            run.ended_at = min(status.ended_at or now, now)
        if run.started_at is not None:
            self._meter(s, job, run)
        if job.current_run_id != run.id or JobState(job.state).is_terminal:
            return  # a stale attempt: metered, but it no longer drives the job
        job.exit_code = status.exit_code
        if job.state == JobState.PLACED.value and run.started_at is not None:
            transition(s, job, JobState.RUNNING, f"running on run {run.id}", run.started_at)
        if state is RunState.LOST:
            if job.cancel_requested_at is not None:
                transition(s, job, JobState.CANCELLED, "cancelled; the run was lost", now)
            elif job.requeue:
                transition(s, job, JobState.QUEUED, f"re-queued: run {run.id} lost "
                           f"({run.reason})", now)
                job.current_run_id = None
            else:
                transition(s, job, JobState.FAILED, f"run {run.id} lost ({run.reason}); "
                           "requeue is off", now)
            return
        target = RUN_TO_JOB[state]
        reason = run.reason
        if job.cancel_requested_at is not None and target is not JobState.COMPLETED:
            target = JobState.CANCELLED
            if job.state_reason.startswith(BUDGET_STOP):
                reason = job.state_reason
        transition(s, job, target, reason, run.ended_at)

    def _billable_limit_s(self, s: Session, run: m.Run) -> int:
        """The longest a run may be billed for: its walltime and what its center lets it run past
        it before the kill (what the job's hold covered)."""
        center = s.get(m.Center, run.center_id)
        conn = self.p.connector_for(center) if center is not None else None
        return run.walltime_s + overrun_s(conn, run.walltime_s)

    def _meter(self, s: Session, job: m.Job, run: m.Run) -> None:
        """Meter and bill the run (once: billing skips a run already metered)."""
        now = self.p.clock.now()
        bill_runs(s, [finished_run(job, run, run.ended_at or now)], now)
