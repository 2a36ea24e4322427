"""Handing placed runs to their centers: several at a time where a connector allows it,
idempotent by run key (a submit that did not complete is retried by the next reconcile), and what
happens when a center refuses a run or its job was cancelled before it got there."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..connectors import RunRequest, RunStatus
from ..domain.enums import RunState
from ..domain.errors import ConnectorError, SuanliError
from ..domain.jobstate import JobState
from ..domain.task import Script
from ..services import staging
from ..services.centers import ACTIVE_RUN_STATES
from ..services.context import Platform
from ..services.environments import activation_for
from ..services.jobs import transition
from ..store import models as m
from ..store.db import log_failure
from ..store.locks import lock_run
from .closing import RunCloser

log = logging.getLogger("suanli.engine")

MAX_SUBMIT_FAILURES = 3


class Submitter(RunCloser):
    """The engine's part that submits runs."""
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self._full_due = True  # every job is planned again at the next pass (capacity changed)

    def _submit_placed(self, placed: list[tuple[int, int, m.Center]]) -> None:
        """Hand the placed runs to their centers: in placement order, several at a time to a
        center whose connector allows it (`submit_concurrency`, e.g. Slurm and Ray over HTTP)."""
        by_center: dict[int, list[tuple[int, int, m.Center]]] = {}
        for item in placed:
            by_center.setdefault(item[2].id, []).append(item)
        for items in by_center.values():
            center = items[0][2]
            workers = int(getattr(self.p.connector_for(center), "submit_concurrency", 1))
            if workers <= 1 or len(items) == 1:
                for item in items:
                    self._submit_one(*item)
                continue
            with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                                    thread_name_prefix=f"submit-{center.slug}") as pool:
                for future in [pool.submit(self._submit_one, *item) for item in items]:
                    try:
                        future.result()
                    except Exception:  # one failed submit must not stop the others
                        log_failure(log, "submit to %s failed", center.slug)

    def _submit_one(self, job_id: int, run_id: int, center: m.Center, *,
                    resubmit: bool = False) -> int:
        """Hand one placed run to its center (outside any transaction: the call may be slow),
        then record the outcome in one serialised step. Returns 1 when the run ended (refused)."""
        with self.p.db.session() as s:
            job = s.get(m.Job, job_id)
            run = s.get(m.Run, run_id)
            assert job is not None and run is not None
            if run.state not in ACTIVE_RUN_STATES or run.external_id is not None:
                return 0
            # Cancelled since it was placed: never started (unless an earlier submit may have
            # reached the center; then it is found there and cancelled by `push_cancels`).
            cancelled = job.cancel_requested_at is not None and not resubmit
            pool = s.get(m.Pool, run.pool_id)
            assert pool is not None
            try:  # bring-your-own-work: env, stage items, outputs, the run's token
                extras = staging.request_extras(s, self.p, job, run)
            except SuanliError as exc:
                extras, missing = {}, exc.message
            else:
                missing = ""
            req = RunRequest(
                run_key=run.run_key, job_id=job.id, units=run.units,
                command=Script(list(job.command), job.setup, activation_for(pool, job)).argv(),
                nodes=len(run.nodes) or 1, walltime_s=run.walltime_s,
                devices=tuple(int(d) for d in run.devices), memory_gb=run.memory_gb,
                pool=pool.name, device_kind=pool.device_kind, resubmit=resubmit,
                tenant_id=job.tenant_id, **extras,
            )
        if cancelled:
            return self._cancel_unsubmitted(run_id)
        if missing:
            return self._refused(run_id, center, ConnectorError(f"cannot stage: {missing}"))
        try:
            external_id = self.p.connector_for(center).submit(req)
        except ConnectorError as exc:
            return self._refused(run_id, center, exc)
        with self.p.db.session(immediate=True) as s:
            locked = lock_run(s, run_id)
            if locked is not None:
                _, run = locked
                run.external_id = external_id
                if run.state not in ACTIVE_RUN_STATES:
                    run.stale = True  # given up meanwhile (failover): cancelled when seen again
        if req.stage:
            self._record_copies(run_id, center)  # e.g. Slurm's staging_dir, copied at submit
        return 0

    def _record_copies(self, run_id: int, center: m.Center) -> None:
        """The uploaded datasets the run's center now keeps a copy of (made by suanli or its
        root supervisor, never by the job) count as present there."""
        holds = getattr(self.p.connector_for(center), "holds_dataset", None)
        if holds is None:
            return
        try:
            staging.record_center_copies(self.p, run_id, holds)
        except Exception:  # never holds up the engine: placement just counts the bytes again
            log_failure(log, "run %s: recording its center's dataset copies failed", run_id)

    @staticmethod
    def _unsubmitted(s: Session, run_id: int) -> tuple[m.Job, m.Run] | None:
        """The run and its job, locked, if the run still waits for its submit."""
        locked = lock_run(s, run_id)
        if locked is None or locked[1].state not in ACTIVE_RUN_STATES \
                or locked[1].external_id is not None:
            return None
        return locked

    def _cancel_unsubmitted(self, run_id: int) -> int:
        """A job cancelled after its placement, before its run reached the center: the run is
        never started."""
        with self.p.db.session(immediate=True) as s:
            locked = self._unsubmitted(s, run_id)
            if locked is None:
                return 0
            job, run = locked
            status = RunStatus(RunState.CANCELLED, reason="cancelled before it was submitted")
            self.close_run(s, job, run, RunState.CANCELLED, status, self.p.clock.now())
            return 1

    def _refused(self, run_id: int, center: m.Center, exc: ConnectorError) -> int:
        """The center refused the run: it failed; its job is re-queued, or failed after
        MAX_SUBMIT_FAILURES refusals, or cancelled if a cancel was asked meanwhile."""
        self._full_due = True  # the run's units are free again
        now = self.p.clock.now()
        with self.p.db.session(immediate=True) as s:
            locked = self._unsubmitted(s, run_id)
            if locked is None:
                return 0
            job, run = locked
            run.state = RunState.FAILED.value
            run.reason = f"submit failed: {exc.message}"[:500]
            run.ended_at = now
            if job.current_run_id != run.id or JobState(job.state).is_terminal:
                return 1
            failures = len(list(s.scalars(select(m.Run.id).where(
                m.Run.job_id == job.id, m.Run.reason.like("submit failed:%")))))
            if job.cancel_requested_at is not None:
                transition(s, job, JobState.CANCELLED,
                           f"cancelled; {center.slug} refused the job: {exc.message}", now)
            elif failures >= MAX_SUBMIT_FAILURES:
                transition(s, job, JobState.FAILED,
                           f"{center.slug} refused the job {failures} times: {exc.message}", now)
            else:
                transition(s, job, JobState.QUEUED, f"re-queued: {center.slug} refused the job: "
                           f"{exc.message}", now)
                job.current_run_id = None
            return 1
