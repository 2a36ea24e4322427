"""Cancels racing the engine, on SQLite and on a real PostgreSQL: tenants cancel their jobs from
several threads while engine passes place them, start real local-executor processes and close
their runs. Afterwards no job is CANCELLED while a run of it completed (or ran on after the
cancel), every job's history is one unbroken chain, and each tenant holds exactly what its
unfinished jobs hold."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from suanli.config import Settings
from suanli.domain.enums import CenterKind, CenterStatus, DeviceKind
from suanli.domain.errors import Conflict
from suanli.domain.jobstate import JobState
from suanli.engine import Engine
from suanli.services import jobs as jobsvc
from suanli.services.centers import CenterInput, create_center, set_center_status
from suanli.services.context import Platform
from suanli.services.jobs import JobInput
from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import World, cpu_pool, database_url, kill_runs
from ..waiting import eventually

pytestmark = pytest.mark.integration

JOBS = 150  # per tenant
SLOTS = 48  # CPU units of the race center: a pass places up to this many jobs at once
CANCELLERS = 4
SEED = 15
FRONT = 4  # how far ahead of the placements the cancellers look


@pytest.fixture(params=["sqlite", "postgresql"])
def race_world(request: pytest.FixtureRequest) -> Iterator[World]:
    home = Path(tempfile.mkdtemp(prefix="suanli-race."))
    url = database_url(request, home, "race")
    db = Database(url)
    db.upgrade()
    p = Platform(db=db, settings=Settings(home=home, database_url=url, scheduler_interval_s=0.02,
                                          health_interval_s=3600))
    w = World(p)
    create_center(p, None, CenterInput(
        slug="race", name_zh="竞速", name_en="Race", kind=CenterKind.CLOUD, district="市南区",
        pue=1.1, pools=[cpu_pool("cpu", units_per_node=SLOTS // 2, price_fen_per_unit_hour=36_000)],
        connector_config={"term_grace_s": 1}))
    for other in (w.alpha, w.beta):  # every job runs on the race center
        set_center_status(p, w.admin, other.id, CenterStatus.OFFLINE, "not in this test")
    yield w
    kill_runs(home)
    db.dispose()
    shutil.rmtree(home, ignore_errors=True)


def test_cancels_racing_engine_passes_leave_consistent_jobs(race_world: World) -> None:
    w = race_world
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    users = [w.u1, w.u2]
    ids: list[tuple[int, int]] = []  # (job id, user index)
    for i in range(JOBS):
        for u, user in enumerate(users):
            ask = JobInput(name=f"r{i}", command=["sleep", "0.6"], device=DeviceKind.CPU,
                           units=1, walltime_s=30)
            ids.append((jobsvc.submit_job(w.p, user, ask).id, u))
    # Most jobs are cancelled each while the engine is about to place it: the cancellers pick
    # among the doomed jobs next in the queue (the lowest ids still queued), while the engine
    # places jobs. Some are cancelled once placed or running, racing the runs' ends.
    draw = [rng.random() for _ in ids]
    doomed = {jid: u for (jid, u), r in zip(ids, draw, strict=True) if r < 0.8}
    late = {jid: u for (jid, u), r in zip(ids, draw, strict=True) if 0.8 <= r < 0.9}
    late_ids = set(late)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def cancel(k: int) -> None:
        mine = random.Random(SEED + k)
        seen = 0
        try:
            while True:
                with lock:
                    early, going = list(doomed), list(late)
                with w.p.db.session() as s:
                    front = list(s.scalars(select(m.Job.id).where(
                        m.Job.state == "QUEUED", m.Job.id.in_(early))
                        .order_by(m.Job.id).limit(FRONT)))
                    started = {jid: state for jid, state in s.execute(
                        select(m.Job.id, m.Job.state).where(
                            m.Job.state.in_(["QUEUED", "PLACED", "RUNNING"]),
                            m.Job.id.in_(going)))}
                    placed = s.scalar(select(func.count(m.Run.id))) or 0
                if not front and not started:
                    return
                if placed == seen:  # the engine is not placing now: wait for its next burst
                    time.sleep(0.002)
                    continue
                seen = placed
                choice = front + [j for j, state in started.items() if state != "QUEUED"]
                if not choice:
                    continue
                jid = mine.choice(choice)
                with lock:
                    u = doomed.pop(jid, None)
                    if u is None:
                        u = late.pop(jid, None)
                if u is None:
                    continue
                try:
                    jobsvc.cancel_job(w.p, users[u], jid)
                except Conflict:
                    pass  # it ended first
        except BaseException as exc:
            errors.append(exc)

    engine = Engine(w.p)
    stop = threading.Event()

    def passes() -> None:
        try:
            engine.run(lambda t: stop.wait(t))
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=passes)
    threads = [threading.Thread(target=cancel, args=(k,)) for k in range(CANCELLERS)]
    runner.start()
    for t in threads:
        t.start()
    t0 = time.monotonic()
    for t in threads:
        t.join(120)
    print(f"cancellers done after {time.monotonic() - t0:.1f} s")
    def unfinished() -> int:
        with w.p.db.session() as s:
            return int(s.scalar(select(func.count(m.Job.id)).where(
                m.Job.state.in_(["QUEUED", "PLACED", "RUNNING"]))) or 0)

    try:
        eventually(lambda: unfinished() == 0, timeout=120, interval=0.2, what="every job ended")
    except AssertionError:
        pass  # reported below, after the engine is stopped
    left = unfinished()
    print(f"all ended after {time.monotonic() - t0:.1f} s")
    engine.request_stop()
    stop.set()
    runner.join(30)
    assert not errors, errors
    assert not left, f"{left} jobs never ended"

    with w.p.db.session() as s:
        jobs = {j.id: j for j in s.scalars(select(m.Job))}
        runs: dict[int, list[m.Run]] = defaultdict(list)
        for r in s.scalars(select(m.Run).order_by(m.Run.id)):
            runs[r.job_id].append(r)
        events: dict[int, list[m.JobEvent]] = defaultdict(list)
        for e in s.scalars(select(m.JobEvent).order_by(m.JobEvent.id)):
            events[e.job_id].append(e)
        billed = dict(s.execute(select(m.UsageRecord.run_id, m.UsageRecord.amount_fen)).all())
        held = dict(s.execute(select(m.Tenant.id, m.Tenant.held_fen)).all())
        unfinished = dict(s.execute(
            select(m.Job.tenant_id, func.sum(m.Job.hold_fen))
            .where(m.Job.state.in_(["QUEUED", "PLACED", "RUNNING"]))
            .group_by(m.Job.tenant_id)).all())

    broken, ran_after_cancel = [], []
    for jid, job in jobs.items():
        chain = events[jid]
        before = None
        for e in chain:
            if e.from_state != before:
                broken.append((jid, [(x.from_state, x.to_state) for x in chain]))
                break
            before = e.to_state
        if before != job.state:
            broken.append((jid, [(x.from_state, x.to_state) for x in chain], job.state))
        if job.state == JobState.CANCELLED.value:
            cancelled_at = next(e.at for e in reversed(chain) if e.to_state == "CANCELLED")
            for r in runs[jid]:
                if r.state == "completed" or (r.ended_at is not None and r.ended_at > cancelled_at):
                    ran_after_cancel.append((jid, r.id, r.state, billed.get(r.id)))
    cancelled = sum(j.state == "CANCELLED" for j in jobs.values())
    completed = sum(j.state == "COMPLETED" for j in jobs.values())
    stopped = sum(1 for j in late_ids if jobs[j].state == "CANCELLED" and runs[j])
    print(f"{len(jobs)} jobs: {cancelled} cancelled ({stopped} once placed), {completed} "
          f"completed, {sum(len(v) for v in runs.values())} runs")
    assert not ran_after_cancel, f"cancelled jobs whose run went on: {ran_after_cancel[:10]}"
    assert not broken, f"broken histories: {broken[:10]}"
    assert all(held[t] == int(unfinished.get(t) or 0) for t in held), (held, unfinished)
    assert cancelled > JOBS and completed > JOBS // 8  # the race was really run
