"""Center health and failover.

This module finds; the engine's loop acts: `check_centers` returns the centers whose status
changed (the loop then plans every job again), `overdue_runs` the runs to give up (the loop closes
each as `lost`, with the end `lost_status` says).

* Every `health_interval_s`, each center's connector is asked for its health. After
  `health_failures` consecutive failures an online (or draining) center goes `offline`
  (status_source "health"); the first good check brings it back `online`. A center an operator set
  offline stays offline until an operator changes it.
* A center offline for longer than `failover_grace_s` loses its active runs: each is closed as
  `lost`, metered up to the last time the center was seen healthy (so nothing is billed twice),
  marked `stale`, and its job is re-queued (or failed, with `requeue: false`).
* When the center answers again, every stale attempt still there is cancelled, so a job never
  keeps running twice. Every step is written to the job's history.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..connectors import Health, RunStatus
from ..domain.enums import CenterStatus, RunState
from ..domain.errors import ConnectorError
from ..services.centers import ACTIVE_RUN_STATES
from ..services.context import Platform
from ..store import models as m
from ..store.locks import lock_run

log = logging.getLogger("suanli.health")


def _event(s: Session, job: m.Job, reason: str, at: datetime) -> None:
    s.add(m.JobEvent(job_id=job.id, at=at, from_state=job.state, to_state=job.state,
                     reason=reason[:500]))


def check_centers(p: Platform) -> list[int]:
    """One round of health checks over every center an operator has not switched off; the stale
    attempts still on a center that answers are cancelled. Returns the centers that went offline
    or came back (capacity changed: every job is to be planned again)."""
    changed: list[int] = []
    with p.db.session() as s:
        centers = list(s.scalars(select(m.Center).order_by(m.Center.id)))
    for center in centers:
        if center.status == CenterStatus.OFFLINE.value and center.status_source == "operator":
            continue
        try:
            health = p.connector_for(center).health()
        except ConnectorError as exc:
            health = Health(False, exc.message)
        except Exception as exc:  # a broken connector must not stop the loop
            health = Health(False, f"{type(exc).__name__}: {exc}")
        if _record_health(p, center.id, health):
            changed.append(center.id)
        if health.ok:
            cancel_stale(p, center.id)
    return changed


def _record_health(p: Platform, center_id: int, health: Health) -> bool:
    """Record one check; True when the center's status changed."""
    now = p.clock.now()
    changed = False
    with p.db.session() as s:
        c = s.get(m.Center, center_id)
        if c is None:
            return False
        c.health_checked_at = now
        c.health_detail = health.detail[:500]
        if health.ok:
            c.health_failures = 0
            c.health_ok_at = now
            if c.status == CenterStatus.OFFLINE.value and c.status_source == "health":
                c.status = CenterStatus.ONLINE.value
                c.status_reason = "health: back online"
                c.offline_since = None
                changed = True
                log.warning("center %s is back online", c.slug)
        else:
            c.health_failures += 1
            if (c.status != CenterStatus.OFFLINE.value
                    and c.health_failures >= p.settings.health_failures):
                c.status = CenterStatus.OFFLINE.value
                c.status_source = "health"
                c.status_reason = f"health: {health.detail}"[:500]
                c.offline_since = now
                changed = True
                log.warning("center %s is offline after %d failed checks: %s", c.slug,
                            c.health_failures, health.detail)
    if changed:
        p.topology_changed()
    return changed


def overdue_runs(p: Platform, now: datetime) -> list[int]:
    """The active runs of centers offline for longer than the grace period: to be given up."""
    cutoff = now - timedelta(seconds=p.settings.failover_grace_s)
    with p.db.session() as s:
        return list(s.scalars(
            select(m.Run.id).join(m.Center, m.Center.id == m.Run.center_id).where(
                m.Center.status == CenterStatus.OFFLINE.value,
                m.Center.offline_since.is_not(None), m.Center.offline_since <= cutoff,
                m.Run.state.in_(ACTIVE_RUN_STATES))))


def lost_status(center: m.Center, run: m.Run, now: datetime) -> RunStatus:
    """How a run given up with its center ends: `lost`, metered up to the last time the center
    was seen healthy (never before the run started)."""
    seen = center.health_ok_at or center.offline_since or now
    ended = max(seen, run.started_at) if run.started_at else seen
    return RunStatus(RunState.LOST, ended_at=ended,
                     reason=f"center {center.slug} offline since "
                            f"{center.offline_since:%Y-%m-%d %H:%M:%S}Z")


def cancel_stale(p: Platform, center_id: int) -> None:
    """Cancel the attempts given up while the center was unreachable, if they still run there."""
    with p.db.session() as s:
        stale = list(s.scalars(select(m.Run).where(m.Run.center_id == center_id,
                                                   m.Run.stale.is_(True))))
        center = s.get(m.Center, center_id)
    if not stale or center is None:
        return
    conn = p.connector_for(center)
    for run in stale:
        assert run.external_id is not None
        try:
            remote = conn.status(run.external_id)
            if not remote.state.is_terminal:
                conn.cancel(run.external_id)
                what = f"stale attempt (run {run.id}) found still {remote.state} on " \
                       f"{center.slug} and cancelled"
            else:
                what = f"stale attempt (run {run.id}) had already ended on {center.slug} " \
                       f"({remote.state})"
        except ConnectorError as exc:
            log.warning("cannot cancel stale run %s on %s: %s", run.id, center.slug, exc.message)
            continue
        with p.db.session(immediate=True) as s:  # the event records the job's state as it is
            locked = lock_run(s, run.id)
            assert locked is not None
            job, row = locked
            row.stale = False
            _event(s, job, what, p.clock.now())
        log.warning("%s", what)


