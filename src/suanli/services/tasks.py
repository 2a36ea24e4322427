"""What a task runs at its center: its variables and its script (see domain/task.py)."""

from __future__ import annotations

from ..domain.task import ARRAY_INDEX_VAR, Script
from ..store import models as m


def run_env(job: m.Job) -> dict[str, str]:
    """The variables a run of `job` gets: the job's own, and SUANLI_ARRAY_INDEX for a task of
    an array (suanli sets it: a job may not)."""
    env = {str(k): str(v) for k, v in (job.env or {}).items()}
    if job.array_index is not None:
        env[ARRAY_INDEX_VAR] = str(job.array_index)
    return env


def task_argv(job: m.Job, activation: str | None = None) -> list[str]:
    """The command a run of `job` executes: the pool's environment `activation`, then the job's
    `setup`, then its command (unchanged when there is neither)."""
    return Script(list(job.command), job.setup, activation).argv()
