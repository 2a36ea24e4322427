"""A pool's named environments: what a job that asks for one runs before its `setup`."""

from __future__ import annotations

from ..store import models as m


def activation_for(pool: m.Pool, job: m.Job) -> str | None:
    """The shell lines that activate the job's `environment` on this pool (None when it names
    none). The scheduler places such a job only on a pool that offers it (`static_reasons`)."""
    if not job.environment:
        return None
    script = (pool.environments or {}).get(job.environment)
    return str(script) if script else None
