"""Row locks for the units that read a job's (or a run's) state and write it back.

Such a unit runs in `Database.session(immediate=True)` and loads its rows through these functions:
on PostgreSQL they lock the rows (`FOR NO KEY UPDATE`: it does not block the inserts of rows that
reference them, such as a job's events and runs), always in the same order — the job, then its
run — so that two units never wait for each other; on SQLite the immediate transaction already
holds the database's write lock. The rows are read afresh, whatever the session held before.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m


def lock_job(s: Session, job_id: int) -> m.Job | None:
    """The job, locked until the end of the transaction."""
    return s.scalars(select(m.Job).where(m.Job.id == job_id).with_for_update(key_share=True)
                     .execution_options(populate_existing=True)).one_or_none()


def lock_run(s: Session, run_id: int) -> tuple[m.Job, m.Run] | None:
    """The run and its job, both locked (the job first)."""
    job_id = s.scalar(select(m.Run.job_id).where(m.Run.id == run_id))
    if job_id is None:
        return None
    job = lock_job(s, job_id)
    run = s.scalars(select(m.Run).where(m.Run.id == run_id).with_for_update(key_share=True)
                    .execution_options(populate_existing=True)).one_or_none()
    if job is None or run is None:
        return None
    return job, run


def lock_dag(s: Session, dag_id: int) -> m.Dag | None:
    """The DAG, locked: its stages are queued, and it is settled, one unit at a time."""
    return s.scalars(select(m.Dag).where(m.Dag.id == dag_id).with_for_update(key_share=True)
                     .execution_options(populate_existing=True)).one_or_none()
