"""The scheduler: pure functions of a snapshot (pools, queue, now) -> decisions. No I/O."""

from .placement import Candidate, Decision, explain_job, schedule, static_reasons
from .snapshot import PoolState, QueuedJob, RunningAllocation

__all__ = [
    "Candidate",
    "Decision",
    "PoolState",
    "QueuedJob",
    "RunningAllocation",
    "explain_job",
    "schedule",
    "static_reasons",
]
