"""The scheduling pass: the queue (kept in memory between passes), the scheduler's decisions,
placements recorded with their runs, then handed to the centers."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from ..domain.jobstate import JobState
from ..scheduling import Decision, QueuedJob, schedule
from ..scheduling.fairshare import order as fair_order
from ..services.arrays import limit_array_tasks
from ..services.context import Platform
from ..services.control import PassStats
from ..services.jobs import transition
from ..services.queueing import Quotas, fair_share_factors
from ..services.snapshot import pool_states, queued_jobs
from ..store import models as m
from ..store.locks import lock_job
from .lease import session_epoch
from .quotes import QuoteBook
from .submit import Submitter

log = logging.getLogger("suanli.engine")

FULL_PASS_S = 10.0


class Placer(Submitter):
    """The engine's part that places waiting jobs."""
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.placements_total = 0
        self._queue: dict[int, QueuedJob] = {}
        self._targets: dict[int, int] = {}  # queued job → the pool it is committed to
        self._nominations: dict[int, list[Any]] = {}  # queued job → the pools it was ranked on
        self._new: set[int] = set()  # queued jobs not yet seen by a pass
        self._last_full = 0.0
        self._topology_seen = -1
        self.quotes = QuoteBook(platform, self._quotes_arrived)  # the peers' answers

    def _quotes_arrived(self) -> None:
        """Peers answered: weigh every queued job again (their pools may now be candidates)."""
        self._full_due = True
        wake = getattr(self, "wake", None)
        if wake is not None:
            wake()

    def schedule_pass(self, stats: PassStats | None = None) -> list[Decision]:
        stats = stats or PassStats()
        t_load = self.p.clock.monotonic()
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
        t0 = self.p.clock.monotonic()
        stats.phases["load"] = round(t0 - t_load, 4)
        # A pass that only saw new jobs plans only the pools those jobs were committed to.
        decisions = schedule(pools, queue, now, targets=self._targets, order=fair_order(fair),
                             admit=quotas, queue_mode=self.p.settings.queue,
                             only_pools=None if full else set(),
                             quotes=self.quotes.current(queue, pools))
        t1 = self.p.clock.monotonic()
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
        stats.phases["place"] = round(self.p.clock.monotonic() - t1, 4)
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
            for q in queued_jobs(s, missing[i : i + 500],
                                 peer_default=self.p.settings.peers_earlier_by_s):
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
                        walltime_s=job.walltime_s, created_at=now, epoch=session_epoch(s))
            s.add(run)
            s.flush()
            # Unique beyond this database: a center (a Ray cluster, a Slurm account) may have
            # seen "job1-run1" from another suanli, or from this one before its data was reset,
            # and an attempt must never be taken for that other one's run.
            run.run_key = f"job{job.id}-run{run.id}-{secrets.token_hex(4)}"
            job.current_run_id = run.id
            reason = f"placed on {center.slug}/{pool.name}"
            if d.moved_from is not None:
                was = s.get(m.Pool, d.moved_from)
                was_center = s.get(m.Center, was.center_id) if was is not None else None
                if was is not None and was_center is not None:
                    # Late binding: it waited at another pool, and this one can start it now.
                    reason += f" (moved from {was_center.slug}/{was.name}, where it waited)"
            transition(s, job, JobState.PLACED, reason, now)
        # Committed before the center is called: a crash here leaves a run with no external id,
        # which the next reconcile submits (submit is idempotent by run key).
        return job.id, run.id, center
