"""Connectors: one small interface per workload manager, found by name in a registry."""

from .base import Capability, Connector, Health, PoolCapacity, RunRequest, RunStatus
from .registry import available, create, register

__all__ = [
    "Capability",
    "Connector",
    "Health",
    "PoolCapacity",
    "RunRequest",
    "RunStatus",
    "available",
    "create",
    "register",
]
