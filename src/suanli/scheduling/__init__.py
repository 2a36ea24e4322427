"""The scheduler: pure functions of a snapshot (pools, queue, now) -> decisions. No I/O."""

from .placement import (
    Candidate,
    Decision,
    Quote,
    QuoteKey,
    explain_job,
    schedule,
    shape_key,
    static_reasons,
)
from .snapshot import PoolState, QueuedJob, RunningAllocation

__all__ = [
    "Candidate",
    "Decision",
    "PoolState",
    "QueuedJob",
    "Quote",
    "QuoteKey",
    "RunningAllocation",
    "explain_job",
    "schedule",
    "shape_key",
    "static_reasons",
]
