"""When will a queued job start? The pool's queue replayed forward (`backfill.forecast`).

A queued job is committed to one pool (`jobs.target_pool_id`, set by the engine's network
placement). Its estimated start is what Slurm's `--test-only` answers: the pool's running jobs end
at their walltimes, the jobs ahead of it in the pool's queue (in the engine's order: priority,
fair share, submission) start as the planner (EASY or FCFS) would start them and run their whole
walltime. Only the first `MAX_POSITION` jobs of a pool's queue are estimated; later ones show
their position alone. Positions may be up to RANK_TTL_S old. Node fragmentation is not modelled
(units only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, literal, select
from sqlalchemy.orm import Session

from ..domain.jobstate import JobState
from ..scheduling import PoolState
from ..scheduling.backfill import Waiting, conservative, forecast
from ..scheduling.placement import running_busy
from ..store import models as m
from .context import Platform
from .queueing import fair_share_factors
from .snapshot import pool_states

MAX_POSITION = 500
RANK_TTL_S = 5.0  # how stale a queue position may be (s): the platform's cache lifetime


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    pool: str  # center/pool the job is committed to
    position: int  # 1-based, in that pool's queue
    estimated_start: datetime | None


@dataclass(frozen=True, slots=True)
class _Ranked:
    index: dict[int, int]  # job id -> its 0-based place in the pool's queue
    head: list[tuple[int, int]]  # units and walltime of the first MAX_POSITION jobs, in order


def _ranked(p: Platform, s: Session, pool_id: int, ids: set[int]) -> _Ranked:
    """The pool's queue in the engine's order (`fairshare.rank`: priority, fair-share factor,
    submission, id), sorted by the database. A queue may hold 10^4 jobs and GET /jobs asks for
    it on every page, so the ranking is kept for RANK_TTL_S — and made afresh at once when a job
    asked about is not in it (a job just submitted or just committed to the pool)."""
    def build() -> _Ranked:
        fair = fair_share_factors(s, p.clock.now(), p.settings.fairshare_half_life_s)
        c = m.Job
        factor: Any = (case({t: round(f, 2) for t, f in fair.items()}, value=c.tenant_id, else_=1.0)
                       if fair else literal(1.0))
        stmt = (select(c.id, c.units, c.walltime_s)
                .where(c.state == JobState.QUEUED.value, c.target_pool_id == int(pool_id))
                .order_by(c.priority.desc(), factor.desc(), c.submitted_at, c.id))
        # Straight through the driver's cursor: SQLAlchemy's result rows cost 4x the query for a
        # 10^4-row queue. The literals are ids and rounded factors, never user text.
        sql = str(stmt.compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True}))
        cur = s.connection().connection.cursor()
        try:
            cur.execute(sql)
            rows = cur.fetchall()
        finally:
            cur.close()
        return _Ranked({r[0]: i for i, r in enumerate(rows)}, [(r[1], r[2]) for r in rows[:MAX_POSITION]])

    key = f"queue-rank:{pool_id}"
    ranked = p.cached(key, build, ttl=RANK_TTL_S)
    if not ids <= ranked.index.keys():
        p.forget(key)
        ranked = p.cached(key, build, ttl=RANK_TTL_S)
    return ranked


def _pool_labels(s: Session, pool_ids: list[int]) -> dict[int, str]:
    """center-slug/pool-name of each pool (as `PoolState.label`)."""
    rows = s.execute(select(m.Pool.id, m.Center.slug, m.Pool.name)
                     .join(m.Center, m.Center.id == m.Pool.center_id).where(m.Pool.id.in_(pool_ids)))
    return {pid: f"{slug}/{name}" for pid, slug, name in rows}


def queue_estimates(p: Platform, s: Session, jobs: list[m.Job]) -> dict[int, QueueEstimate]:
    """Position and estimated start of each queued job among `jobs` that is committed to a pool."""
    wanted: dict[int, set[int]] = {}
    for j in jobs:
        if j.state == JobState.QUEUED.value and j.target_pool_id is not None:
            wanted.setdefault(j.target_pool_id, set()).add(j.id)
    if not wanted:
        return {}
    now = p.clock.now()
    labels = _pool_labels(s, sorted(wanted))
    states: dict[int, PoolState] | None = None  # read only when a job is near a queue's head
    out: dict[int, QueueEstimate] = {}
    for pool_id, ids in wanted.items():
        label = labels.get(pool_id)
        if label is None:
            continue
        ranked = _ranked(p, s, pool_id, ids)
        index = ranked.index
        deepest = max((index.get(i, 0) for i in ids), default=0)
        starts: list[float] = []
        if states is None and deepest < MAX_POSITION:
            states = {st.pool_id: st for st in pool_states(s) if st.pool_id in wanted}
        st = states.get(pool_id) if states is not None and deepest < MAX_POSITION else None
        if st is not None:
            busy = running_busy(st.running, now)
            waiting = [Waiting(units, float(wall)) for units, wall in ranked.head[:deepest + 1]]
            if p.settings.queue == "conservative":
                starts = conservative(st.free_units, busy, waiting, 0.0).reservations or []
            else:
                starts = forecast(st.free_units, busy, waiting, 0.0, backfill=p.settings.queue == "easy")
        for jid in ids:
            i = index.get(jid)
            if i is None:
                continue
            t = starts[i] if i < len(starts) else math.inf
            out[jid] = QueueEstimate(label, i + 1,
                                     now + timedelta(seconds=t) if math.isfinite(t) else None)
    return out
