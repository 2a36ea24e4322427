"""Connectors: one small interface per workload manager, found by name in a registry."""

from .base import (
    DEFAULT_KILL_GRACE_S,
    Capability,
    Connector,
    Health,
    PoolCapacity,
    RunRequest,
    RunStatus,
    StageItem,
    overrun_s,
)
from .registry import available, create, register

__all__ = [
    "DEFAULT_KILL_GRACE_S",
    "Capability",
    "Connector",
    "Health",
    "PoolCapacity",
    "RunRequest",
    "RunStatus",
    "StageItem",
    "available",
    "create",
    "overrun_s",
    "register",
]
