"""Enumerations shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class CenterKind(StrEnum):
    SUPERCOMPUTING = "supercomputing"
    AI = "ai"
    CLOUD = "cloud"
    EDGE = "edge"
    PLATFORM = "platform"  # another suanli platform that lends us compute (a peer)


class CenterStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    DRAINING = "draining"


class DeviceKind(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    NPU = "npu"


class Precision(StrEnum):
    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    CENTER_OPERATOR = "center_operator"
    TENANT_ADMIN = "tenant_admin"
    TENANT_USER = "tenant_user"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"

    @property
    def is_tenant(self) -> bool:
        return self in (Role.TENANT_ADMIN, Role.TENANT_USER)

    @property
    def is_platform(self) -> bool:
        return self in (Role.PLATFORM_ADMIN, Role.REVIEWER, Role.AUDITOR)


class Policy(StrEnum):
    """How a job wants its feasible pools ranked."""

    FASTEST = "fastest"
    CHEAPEST = "cheapest"
    GREENEST = "greenest"
    BALANCED = "balanced"


class RunState(StrEnum):
    """One attempt of a job on one center, as the center's workload manager sees it."""

    PENDING = "pending"  # accepted by the center, not started yet
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    LOST = "lost"  # the center no longer knows the attempt (crash, node failure)
    UNKNOWN = "unknown"  # never reached the center

    @property
    def is_terminal(self) -> bool:
        return self in (
            RunState.COMPLETED,
            RunState.FAILED,
            RunState.CANCELLED,
            RunState.TIMEOUT,
            RunState.LOST,
        )
