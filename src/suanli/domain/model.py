"""Value objects shared by the scheduler, the services and the simulator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .enums import CenterKind, CenterStatus, DeviceKind, Policy, Precision
from .task import Constraints


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """What a resource pool is: the facts an operator registers. Capacity is derived, never stored."""

    device_kind: DeviceKind
    device_model: str
    domestic: bool
    units_per_node: int
    nodes: int
    memory_gb_per_node: int
    price_fen_per_unit_hour: int
    tflops_fp64: float | None = None
    tflops_fp32: float | None = None
    tflops_fp16: float | None = None
    tflops_int8: float | None = None
    watts_per_unit: int = 300
    max_walltime_s: int = 7 * 24 * 3600
    # What programs run there: the CPU architecture, the features it offers (cann-8.0, cuda-12.4,
    # mpi, ...) and the names of the environments a job may ask for.
    arch: str = "x86_64"
    features: frozenset[str] = frozenset()
    environments: frozenset[str] = frozenset()

    @property
    def total_units(self) -> int:
        return self.units_per_node * self.nodes

    def tflops(self, precision: Precision) -> float | None:
        """Peak TFLOPS (TOPS for INT8) of one unit at a precision; None where the device has none."""
        value: float | None = getattr(self, f"tflops_{precision.value}")
        return value

    def peak_pflops(self, precision: Precision, units: int | None = None) -> float:
        """Peak PFLOPS of `units` units (all units by default); 0 where the precision is absent."""
        per_unit = self.tflops(precision) or 0.0
        return per_unit * (self.total_units if units is None else units) / 1000.0


@dataclass(frozen=True, slots=True)
class Resources:
    """What a job asks for. `units` is the total over all nodes; `memory_gb` is per node."""

    device: DeviceKind
    units: int = 1
    nodes: int = 1
    model: str | None = None
    memory_gb: int | None = None

    @property
    def units_per_node(self) -> int:
        return self.units // self.nodes


@dataclass(frozen=True, slots=True)
class CenterInfo:
    id: int
    slug: str
    name_zh: str
    name_en: str
    kind: CenterKind
    district: str
    pue: float
    status: CenterStatus
    emulated: bool


@dataclass(frozen=True, slots=True)
class UsageFigures:
    """The metered facts of one run: what it consumed and what it costs at the price of its start."""

    unit_seconds: int
    pflops_hours: float
    energy_wh: int
    amount_fen: int


def meter(
    spec: PoolSpec, *, units: int, seconds: int, precision: Precision, pue: float
) -> UsageFigures:
    """Meter a run of `units` units for `seconds` seconds on a pool.

    Standard P·h is the peak PFLOPS of the units at the job's precision times the hours.
    Energy is units × watts × hours × PUE. The amount is rounded half up to the fen, in integers.
    """
    seconds = max(0, seconds)
    unit_seconds = units * seconds
    pflops_hours = spec.peak_pflops(precision, units) * seconds / 3600.0
    energy_wh = round(units * spec.watts_per_unit * seconds * pue / 3600.0)
    amount_fen = (unit_seconds * spec.price_fen_per_unit_hour + 1800) // 3600
    return UsageFigures(unit_seconds, pflops_hours, energy_wh, amount_fen)


NO_CONSTRAINTS = Constraints()


@dataclass(frozen=True, slots=True)
class JobRequirements:
    """The parts of a job that decide where it may run and how to rank the choices."""

    resources: Resources
    walltime_s: int
    precision: Precision = Precision.FP32
    policy: Policy = Policy.BALANCED
    priority: int = 0
    domestic_only: bool = False
    district: str | None = None
    deadline: datetime | None = None
    budget_fen: int | None = None
    data_site: str | None = None  # the center (slug) holding the job's input data
    data_gb: float | None = None  # its size: moving it elsewhere takes time
    constraints: Constraints = NO_CONSTRAINTS  # the pool's arch and the features it must offer
    environment: str | None = None  # a named environment the pool must offer
    data: DataToMove | None = None  # its real inputs; when set, used instead of data_site/data_gb
    # Home first: a peer platform's pool only when it finishes the job this many seconds earlier
    # than the best home pool (None: peers are ranked like any pool).
    peer_earlier_by_s: float | None = None

    def unmet(self, spec: PoolSpec) -> list[str]:
        """Why a pool's software and hardware do not suit the job (empty: they do)."""
        why = self.constraints.missing(spec.arch, spec.features)
        if self.environment and self.environment not in spec.environments:
            why.append(f"no environment {self.environment}")
        return why


@dataclass(frozen=True, slots=True)
class DataToMove:
    """The bytes a job's inputs take to a center. What suanli holds (the work folder, input
    artifacts, uploaded datasets) goes to whichever center runs the job, and an uploaded dataset
    only to a center without a copy; a dataset registered at centers (no bytes in suanli) never
    moves: the job can run only at a center holding it."""

    artifact_bytes: int = 0
    datasets: tuple[tuple[int, frozenset[str]], ...] = ()  # (size in bytes, centers holding it)
    # Datasets suanli holds no bytes of (registered at centers only): (name, centers holding
    # it). They cannot travel, so the job runs only where each is.
    pinned: tuple[tuple[str, frozenset[str]], ...] = ()

    def bytes_to(self, center: str) -> int:
        """Bytes to move for the job to run at `center` (a slug)."""
        return self.artifact_bytes + sum(size for size, at in self.datasets if center not in at)

    def absent_at(self, center: str) -> list[str]:
        """The datasets that cannot reach `center` (a slug): the job cannot run there."""
        return [name for name, at in self.pinned if center not in at]


def billable_span(started: datetime, ended: datetime, *, placed_at: datetime, seen_at: datetime,
                  limit_s: int) -> tuple[datetime, datetime]:
    """The start and end a run is billed for, from what its center reported: never before suanli
    placed the run, never after suanli saw it end (`seen_at`), never longer than `limit_s` (its
    walltime and what its center lets it run past it before the kill). A center's report is a
    claim, not a fact suanli bills on unchecked."""
    start = min(max(started, placed_at), seen_at)
    # A center that reports whole seconds (Slurm) truncates a start within the second suanli
    # placed the run to before the placement: the start moves up to it, and the end moves with it
    # (by under a second), so the run keeps the length its center measured instead of losing up
    # to a second (a 1 s job billed 0).
    shift = start - started
    if not timedelta(0) < shift < timedelta(seconds=1):
        shift = timedelta(0)
    return start, min(max(ended + shift, start), seen_at, start + timedelta(seconds=limit_s))
