"""The job state machine: the only place that says which state changes are legal."""

from __future__ import annotations

from enum import StrEnum

from .errors import IllegalTransition


class JobState(StrEnum):
    QUEUED = "QUEUED"
    PLACED = "PLACED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Placed on a center (a run exists that may still consume resources)."""
        return self in (JobState.PLACED, JobState.RUNNING)


TERMINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}
)

# QUEUED -> PLACED -> RUNNING -> terminal. A placed or running job whose center failed goes back
# to QUEUED to be re-placed. A queued job can be cancelled, or failed when it can no longer run.
ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PLACED, JobState.CANCELLED, JobState.FAILED}),
    JobState.PLACED: frozenset(
        {JobState.RUNNING, JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMEOUT,
            JobState.QUEUED,
        }
    ),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMEOUT: frozenset(),
}


def can_transition(current: JobState, target: JobState) -> bool:
    return target in ALLOWED[current]


def check_transition(current: JobState, target: JobState) -> JobState:
    """Return `target` if the change is legal, else raise IllegalTransition."""
    if not can_transition(current, target):
        raise IllegalTransition(f"a job cannot go from {current} to {target}")
    return target
