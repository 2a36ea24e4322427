"""The scheduler's input: an immutable picture of pools and queued jobs at one instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain.enums import CenterStatus
from ..domain.model import JobRequirements, PoolSpec


@dataclass(frozen=True, slots=True)
class RunningAllocation:
    """Units held by a run on a pool, and when its walltime ends at the latest."""

    units: int
    ends_by: datetime
    devices: tuple[int, ...] = ()  # global device indices, when known (to know which nodes free up)


@dataclass(frozen=True, slots=True)
class PoolState:
    pool_id: int
    center_id: int
    center_slug: str
    pool_name: str
    spec: PoolSpec
    pue: float
    district: str
    center_status: CenterStatus
    # Free device indices per node. Device d of node n has the global index n * units_per_node + d.
    free_devices: tuple[frozenset[int], ...]
    free_memory_gb: tuple[int, ...]
    running: tuple[RunningAllocation, ...] = ()
    withdrawn: bool = False  # its platform (a peer) no longer offers it: never a candidate
    peer: bool = False  # at a peer platform's center (federation)

    @property
    def free_units(self) -> int:
        return sum(len(f) for f in self.free_devices)

    @property
    def label(self) -> str:
        return f"{self.center_slug}/{self.pool_name}"

    @staticmethod
    def idle(
        pool_id: int,
        center_id: int,
        center_slug: str,
        pool_name: str,
        spec: PoolSpec,
        *,
        pue: float = 1.3,
        district: str = "",
        center_status: CenterStatus = CenterStatus.ONLINE,
    ) -> PoolState:
        """A pool with nothing running (convenient for tests and the simulator)."""
        upn = spec.units_per_node
        return PoolState(
            pool_id=pool_id,
            center_id=center_id,
            center_slug=center_slug,
            pool_name=pool_name,
            spec=spec,
            pue=pue,
            district=district,
            center_status=center_status,
            free_devices=tuple(
                frozenset(range(n * upn, (n + 1) * upn)) for n in range(spec.nodes)
            ),
            free_memory_gb=tuple(spec.memory_gb_per_node for _ in range(spec.nodes)),
        )


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: int
    tenant_id: int
    submitted_at: datetime
    req: JobRequirements
    target_pool_id: int | None = None  # the pool it is committed to, when it already is
