"""Reconciliation: ask each active run's center for its state and record starts and ends; give up
the runs of centers gone for too long (failover, found by `health`); push cancels to the centers."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..connectors import Capability, RunStatus
from ..domain.enums import CenterStatus, RunState
from ..domain.errors import ConnectorError
from ..domain.jobstate import JobState
from ..domain.model import billable_span
from ..services import staging
from ..services.centers import ACTIVE_RUN_STATES
from ..services.context import Platform
from ..services.jobs import transition
from ..store import models as m
from ..store.db import log_failure
from ..store.locks import lock_run
from .health import lost_status, overdue_runs
from .submit import Submitter

log = logging.getLogger("suanli.engine")


class Reconciler(Submitter):
    """The engine's part that keeps runs in step with their centers."""
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)

    def reconcile(self) -> int:
        """Ask each active run's center for its state; record starts and ends. Returns ends."""
        with self.p.db.session() as s:
            # Runs on offline centers wait for the health check or the failover.
            rows = s.execute(
                select(m.Run.id, m.Run.external_id, m.Center)
                .join(m.Center, m.Center.id == m.Run.center_id)
                .where(m.Run.state.in_(ACTIVE_RUN_STATES),
                       m.Center.status != CenterStatus.OFFLINE.value)).all()
        known = self._batch_statuses([(r[0], r[1], r[2]) for r in rows])  # centers detached
        ended = 0
        for run_id, external_id, _ in rows:
            try:
                ended += self._reconcile_run(run_id, known.get((run_id, external_id)))
            except ConnectorError as exc:
                log.warning("run %s: center did not answer: %s", run_id, exc.message)
            except IntegrityError:
                log.info("run %s: already metered by another pass", run_id)
        return ended

    def fail_over(self) -> int:
        """Give up the runs of centers offline for longer than the grace period (what
        `health.overdue_runs` finds): each is closed as lost, marked stale (cancelled when its
        center answers again). Returns how many (the loop then plans every job again)."""
        now = self.p.clock.now()
        lost = 0
        for run_id in overdue_runs(self.p, now):
            with self.p.db.session(immediate=True) as s:  # the run and its job, read and closed at once
                locked = lock_run(s, run_id)
                if locked is None or locked[1].state not in ACTIVE_RUN_STATES:
                    continue
                job, run = locked
                center = s.get(m.Center, run.center_id)
                assert center is not None
                run.stale = run.external_id is not None
                self.close_run(s, job, run, RunState.LOST, lost_status(center, run, now), now)
                lost += 1
        return lost

    def _batch_statuses(self, runs: list[tuple[int, str | None, m.Center]]
                        ) -> dict[tuple[int, str | None], RunStatus]:
        """One call per center whose connector answers for many runs at once (Slurm, Ray),
        instead of one call per run. Runs it does not answer for are asked one by one."""
        by_center: dict[int, list[tuple[int, str]]] = {}
        centers: dict[int, m.Center] = {}
        for run_id, ext, center in runs:
            if ext is not None:
                by_center.setdefault(center.id, []).append((run_id, ext))
                centers[center.id] = center
        known: dict[tuple[int, str | None], RunStatus] = {}
        for center_id, items in by_center.items():
            conn = self.p.connector_for(centers[center_id])
            batch = getattr(conn, "statuses", None)
            if len(items) < 2 or Capability.BATCH_STATUS not in conn.capabilities or not batch:
                continue
            try:
                answers: dict[str, RunStatus] = batch([ext for _, ext in items])
            except ConnectorError as exc:
                log.warning("center %s did not answer for its runs: %s",
                            centers[center_id].slug, exc.message)
                continue
            for run_id, ext in items:
                if ext in answers:
                    known[(run_id, ext)] = answers[ext]
        return known

    def _reconcile_run(self, run_id: int, known: RunStatus | None = None) -> int:
        with self.p.db.session() as s:
            run = s.get(m.Run, run_id)
            if run is None or run.state not in ACTIVE_RUN_STATES:
                return 0
            center = s.get(m.Center, run.center_id)
            assert center is not None
            job_id, external_id, seen = run.job_id, run.external_id, run.state
        if external_id is None:
            # Placed but the submit did not complete (crash, or a failed call): retry it.
            return self._submit_one(job_id, run_id, center, resubmit=True)
        # The center is asked outside any transaction (it may be slow); what it says is then
        # applied in one serialised step, to the run and job as they are by then.
        status = known if known is not None else self.p.connector_for(center).status(external_id)
        if status.state is RunState.PENDING or (status.state is RunState.RUNNING
                                                and seen == RunState.RUNNING.value):
            return 0  # nothing new: no write
        with self.p.db.session(immediate=True) as s:
            locked = lock_run(s, run_id)
            if locked is None:
                return 0
            job, run = locked
            if run.state not in ACTIVE_RUN_STATES or run.external_id != external_id:
                return 0  # closed meanwhile (a failover)
            ended = self._apply_status(s, job, run, status)
        self._record_copies(run_id, center)  # it has started or ended: its staging is done
        if ended:
            self._collect_outputs(run_id, center, external_id)
        return ended

    def _collect_outputs(self, run_id: int, center: m.Center, external_id: str) -> None:
        """An ended run's packed outputs, from a connector that packs them where suanli reads
        them (the local executor); the others have put them to the run's outputs URL. Whatever
        happens here, the job's state and bill are already recorded."""
        collect = getattr(self.p.connector_for(center), "collect_outputs", None)
        if collect is None:
            return
        path = None
        try:
            path = collect(external_id)
            if path is not None:
                staging.ingest_outputs(self.p, run_id, path)
        except Exception:  # outputs never hold up the engine
            log_failure(log, "run %s: collecting its outputs failed", run_id)
        finally:  # stored or refused, the center's copy goes: it must not fill the disk
            if path is not None:
                Path(path).unlink(missing_ok=True)

    def _apply_status(self, s: Session, job: m.Job, run: m.Run, status: RunStatus) -> int:
        """Record what the center says of the run; the caller holds both rows' locks."""
        now = self.p.clock.now()
        if status.state is RunState.PENDING:
            return 0
        if status.state is RunState.RUNNING:
            if run.state == "pending":
                run.state = "running"
                run.started_at, _ = billable_span(status.started_at or now, now,
                                                  placed_at=run.created_at, seen_at=now,
                                                  limit_s=run.walltime_s)
                if job.current_run_id == run.id and job.state == JobState.PLACED.value:
                    transition(s, job, JobState.RUNNING, f"running on run {run.id}",
                               run.started_at)
            return 0
        state = RunState.LOST if status.state is RunState.UNKNOWN else status.state
        self.close_run(s, job, run, state, status, now)
        return 1

    def push_cancels(self) -> None:
        with self.p.db.session() as s:
            rows = s.execute(
                select(m.Run, m.Center)
                .join(m.Job, m.Job.current_run_id == m.Run.id)
                .join(m.Center, m.Center.id == m.Run.center_id)
                .where(m.Job.cancel_requested_at.is_not(None), m.Run.state.in_(ACTIVE_RUN_STATES),
                       m.Run.external_id.is_not(None))
            ).all()
        for run, center in rows:
            try:
                assert run.external_id is not None
                self.p.connector_for(center).cancel(run.external_id)
            except ConnectorError as exc:
                log.warning("cancel of run %s failed: %s", run.id, exc.message)
