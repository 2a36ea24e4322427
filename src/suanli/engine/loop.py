"""The platform's control loop: reconcile runs with their centers, meter what ended, place what waits.

One engine per server. Each step is idempotent and commits per run, so a crash at any point is
recovered by the next pass: runs are found again by their key, a run is metered exactly once (the
usage table has one row per run, enforced by the database), and a job gets a new run only after
its previous run has ended.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..connectors import Capability, RunRequest, RunStatus, overrun_s
from ..domain.enums import CenterStatus, RunState
from ..domain.errors import ConnectorError, SuanliError
from ..domain.jobstate import JobState
from ..domain.model import billable_span
from ..domain.task import Script
from ..scheduling import Decision, QueuedJob, schedule
from ..scheduling.fairshare import order as fair_order
from ..services import staging
from ..services.arrays import limit_array_tasks
from ..services.artifacts import reap_expired_outputs
from ..services.billing import BUDGET_STOP, bill_runs, finished_run, stop_over_budget
from ..services.centers import ACTIVE_RUN_STATES
from ..services.context import Platform
from ..services.control import EngineStatus, PassStats
from ..services.dags import advance as advance_dags
from ..services.environments import activation_for
from ..services.jobs import transition
from ..services.prices import sync_current as sync_current_prices
from ..services.queueing import Quotas, fair_share_factors
from ..services.snapshot import pool_states, queued_jobs
from ..services.vouchers import expire_grants
from ..store import models as m
from ..store.locks import lock_job, lock_run
from .health import check_centers, lost_status, overdue_runs

log = logging.getLogger("suanli.engine")

MAX_SUBMIT_FAILURES = 3
CLOCK_SKEW = timedelta(seconds=5)  # a center's clock may be this far ahead before it is doubted
MIN_GAP_S = 0.2
FULL_PASS_S = 10.0
SLOW_PASS_S = 0.5  # a pass this long is logged (the scheduler runs one a second)
RUN_TO_JOB = {
    RunState.COMPLETED: JobState.COMPLETED,
    RunState.FAILED: JobState.FAILED,
    RunState.CANCELLED: JobState.CANCELLED,
    RunState.TIMEOUT: JobState.TIMEOUT,
}


class Engine:
    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.last = PassStats()
        self.placements_total = 0
        self._queue: dict[int, QueuedJob] = {}
        self._targets: dict[int, int] = {}  # queued job → the pool it is committed to
        self._nominations: dict[int, list[Any]] = {}  # queued job → the pools it was ranked on
        self._new: set[int] = set()  # queued jobs not yet seen by a pass
        self._full_due = True
        self._last_full = 0.0
        self._topology_seen = -1
        self._last_health = -1e9
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop --------------------------------------------------------------------------
    def wake(self) -> None:
        """Ask for a pass soon (after a submission, a cancel, a capacity change)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="suanli-engine", daemon=True)
            self._thread.start()

    def status(self) -> EngineStatus:
        return EngineStatus(last=self.last, placements_total=self.placements_total,
                            running=self._thread is not None and self._thread.is_alive(),
                            pid=os.getpid())

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        def wait(timeout: float) -> None:
            self._wake.wait(timeout)
            self._wake.clear()

        self.run(wait)

    def run(self, wait: Callable[[float], None],
            after_pass: Callable[[Engine], None] | None = None) -> None:
        """Run passes until stopped. `wait(timeout)` returns early when someone wakes us."""
        interval = self.p.settings.scheduler_interval_s
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.tick()
            except Exception:  # the loop must survive anything one pass hits
                log.exception("engine pass failed")
            took = time.perf_counter() - t0
            if after_pass is not None:
                after_pass(self)
            wait(interval)
            # Wake-ups coalesce: at least MIN_GAP between passes, and never more than half the
            # time in passes, so a burst of submissions cannot starve the API of the GIL.
            pause = max(MIN_GAP_S, took) - (time.perf_counter() - t0 - took)
            if pause > 0:
                self._stop.wait(pause)

    def tick(self) -> PassStats:
        started = time.perf_counter()
        stats = PassStats(at=self.p.clock.now())
        now_m = self.p.clock.monotonic()
        if now_m - self._last_health >= self.p.settings.health_interval_s:
            self._last_health = now_m
            if check_centers(self.p):
                self.request_full_pass()  # a center went offline or came back
            self.housekeeping()
        stats.finished = self.reconcile() + self.fail_over()
        if stats.finished:
            self._full_due = True  # capacity came back
        with self.p.db.session(immediate=True) as s:
            if stop_over_budget(s, self.p.clock.now()):
                log.info("jobs stopped at their budget")
        self.push_cancels()
        advance_dags(self.p)  # stages whose parents completed join the queue
        t1 = time.perf_counter()
        self.schedule_pass(stats)
        t2 = time.perf_counter()
        stats.seconds = t2 - started
        stats.phases["reconcile"] = round(t1 - started, 4)
        stats.phases["schedule"] = round(t2 - t1, 4)
        if stats.seconds > SLOW_PASS_S:
            log.info("slow pass: %.3fs %s, %d queued, %d placed", stats.seconds, stats.phases,
                     stats.queued, stats.placed)
        self.last = stats
        return stats

    def housekeeping(self) -> None:
        """What moves with time: prices whose version became valid, grants that expired, jobs'
        outputs past their retention."""
        with self.p.db.session() as s:
            changed = sync_current_prices(s, self.p.clock.now())
        if changed:
            self.p.topology_changed()
        if expire_grants(self.p):
            log.info("voucher grants expired")
        try:
            reap_expired_outputs(self.p)
        except OSError:  # the artifact store unreachable: try again at the next housekeeping
            log.exception("removing expired job outputs failed")

    # -- reconcile ---------------------------------------------------------------------------
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
        center answers again). Returns how many."""
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
        if lost:
            self.request_full_pass()
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

    def _record_copies(self, run_id: int, center: m.Center) -> None:
        """The uploaded datasets the run's center now keeps a copy of (made by suanli or its
        root supervisor, never by the job) count as present there."""
        holds = getattr(self.p.connector_for(center), "holds_dataset", None)
        if holds is None:
            return
        try:
            staging.record_center_copies(self.p, run_id, holds)
        except Exception:  # never holds up the engine: placement just counts the bytes again
            log.exception("run %s: recording its center's dataset copies failed", run_id)

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
            log.exception("run %s: collecting its outputs failed", run_id)
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

    # -- cancels -----------------------------------------------------------------------------
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

    # -- scheduling --------------------------------------------------------------------------
    def schedule_pass(self, stats: PassStats | None = None) -> list[Decision]:
        stats = stats or PassStats()
        t_load = time.perf_counter()
        now = self.p.clock.now()
        with self.p.db.session() as s:
            queue = self._load_queue(s)
            stats.queued = len(queue)
            queue = limit_array_tasks(s, queue)  # an array's `%N`: at most N placed at once
            if not queue:
                return []
            full = self._full_pass_due()
            if not full and not self._new:
                # Nothing freed capacity and nothing new arrived since the last full pass: every
                # job that did not start then still cannot.
                return []
            self._new.clear()
            pools = pool_states(s)
            fair = fair_share_factors(s, now, self.p.settings.fairshare_half_life_s)
            quotas = Quotas.load(s)
        t0 = time.perf_counter()
        stats.phases["load"] = round(t0 - t_load, 4)
        # A pass that only saw new jobs plans only the pools those jobs were committed to.
        decisions = schedule(pools, queue, now, targets=self._targets, order=fair_order(fair),
                             admit=quotas, queue_mode=self.p.settings.queue,
                             only_pools=None if full else set())
        t1 = time.perf_counter()
        stats.phases["decide"] = round(t1 - t0, 4)
        self._remember_targets(decisions)
        if any(d.deferred for d in decisions):
            self._full_due = True  # units the planner handed out were not taken: plan again
        to_submit: list[tuple[int, int, m.Center]] = []
        for d in decisions:
            if d.placed:
                placed = self._place(d, now)
                if placed is not None:
                    to_submit.append(placed)
                    stats.placed += 1
            elif d.target_pool_id is not None:
                stats.waiting_by_pool[d.target_pool_id] = stats.waiting_by_pool.get(d.target_pool_id, 0) + 1
        self._submit_placed(to_submit)
        stats.phases["place"] = round(time.perf_counter() - t1, 4)
        self.placements_total += stats.placed
        return decisions

    def _remember_targets(self, decisions: list[Decision]) -> None:
        """Keep each waiting job's committed pool, in memory and on the job row (the API shows it
        and a restarted engine keeps the commitment)."""
        changed: list[dict[str, int | None]] = []
        for d in decisions:
            if d.candidates:
                self._nominations[d.job_id] = d.candidates
            elif d.job_id in self._nominations:
                d.candidates = self._nominations[d.job_id]  # the placement keeps why this pool
            if d.placed:
                self._targets.pop(d.job_id, None)
                self._nominations.pop(d.job_id, None)
                continue
            if self._targets.get(d.job_id) != d.target_pool_id:
                if d.target_pool_id is None:
                    self._targets.pop(d.job_id, None)
                else:
                    self._targets[d.job_id] = d.target_pool_id
                changed.append({"jid": d.job_id, "pool": d.target_pool_id})
        if changed:
            with self.p.db.session() as s:
                jobs = cast(Table, m.Job.__table__)
                s.execute(update(jobs).where(jobs.c.id == bindparam("jid"))
                          .values(target_pool_id=bindparam("pool")), changed)

    def _load_queue(self, s: Session) -> list[QueuedJob]:
        """The queue, kept in memory between passes: a queued job's requirements never change,
        so each pass reads only the ids in the queue and the rows of jobs new to it."""
        ids = set(s.scalars(select(m.Job.id).where(m.Job.state == JobState.QUEUED.value)))
        for gone in self._queue.keys() - ids:
            del self._queue[gone]
            self._targets.pop(gone, None)
            self._nominations.pop(gone, None)
        self._new &= ids
        missing = sorted(ids - self._queue.keys())
        for i in range(0, len(missing), 500):
            for q in queued_jobs(s, missing[i : i + 500]):
                self._queue[q.job_id] = q
                self._new.add(q.job_id)
                if q.target_pool_id is not None:
                    self._targets[q.job_id] = q.target_pool_id
        return list(self._queue.values())

    def _full_pass_due(self) -> bool:
        now = self.p.clock.monotonic()
        version = self.p.topology_version
        if self._full_due or version != self._topology_seen or now - self._last_full > FULL_PASS_S:
            self._full_due = False
            self._topology_seen = version
            self._last_full = now
            return True
        return False

    def request_full_pass(self) -> None:
        """Capacity may have changed (a cancel, a center back online): re-examine every job."""
        self._full_due = True
        self.wake()

    def _place(self, d: Decision, now: datetime) -> tuple[int, int, m.Center] | None:
        """Record the placement and its run; returns the job and run ids and the (detached)
        center, to submit."""
        assert d.pool_id is not None
        # The job is read and placed in one serialised step: a cancel may be racing us.
        with self.p.db.session(immediate=True) as s:
            job = lock_job(s, d.job_id)
            if job is None or job.state != JobState.QUEUED.value:
                return None  # cancelled meanwhile
            pool = s.get(m.Pool, d.pool_id)
            assert pool is not None
            center = s.get(m.Center, pool.center_id)
            assert center is not None
            attempt = 1 + len(list(s.scalars(select(m.Run.id).where(m.Run.job_id == job.id))))
            placement = m.Placement(job_id=job.id, pool_id=pool.id, center_id=center.id,
                                    decided_at=now, policy=job.policy,
                                    explanation=d.explanation())
            s.add(placement)
            s.flush()
            run = m.Run(job_id=job.id, placement_id=placement.id, center_id=center.id,
                        pool_id=pool.id, attempt=attempt, run_key=f"pending-{placement.id}",
                        state="pending", units=job.units, nodes=list(d.nodes),
                        devices=list(d.devices), memory_gb=job.memory_gb,
                        walltime_s=job.walltime_s, created_at=now)
            s.add(run)
            s.flush()
            # Unique beyond this database: a center (a Ray cluster, a Slurm account) may have
            # seen "job1-run1" from another suanli, or from this one before its data was reset,
            # and an attempt must never be taken for that other one's run.
            run.run_key = f"job{job.id}-run{run.id}-{secrets.token_hex(4)}"
            job.current_run_id = run.id
            transition(s, job, JobState.PLACED, f"placed on {center.slug}/{pool.name}", now)
        # Committed before the center is called: a crash here leaves a run with no external id,
        # which the next reconcile submits (submit is idempotent by run key).
        return job.id, run.id, center

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
                        log.exception("submit to %s failed", center.slug)

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
