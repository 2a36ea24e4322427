"""What the platform and job routes answer beyond the records themselves: the index, health,
capacity, the caller, discovered pools, and the scheduler's estimates and placement reasons.
Times are UTC (`…Z`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..domain.enums import DeviceKind, Policy, Role
from ..domain.jobstate import JobState
from .schemas import PeerPublic, PeerReportIn, ReplicaRole


class ApiIndex(BaseModel):
    name: str
    version: str
    network_id: str = Field(description="this platform's identifier in the national network")
    openapi: str
    docs: str
    health: str
    metrics: str


class SchedulerStatus(BaseModel):
    """The engine as this replica sees it, and its last pass."""
    running: bool
    pid: int | None
    restarts: int
    role: Literal["leader", "standby", ""] = Field(
        description="leader, standby, or empty where no lease is kept")
    epoch: int | None
    placements_total: int
    last_pass_at: datetime | None
    queued: int
    placed: int
    finished: int
    seconds: float
    phases: dict[str, float]
    waiting_by_pool: dict[str, int]


class ReplicaRef(BaseModel):
    id: str
    role: ReplicaRole


class Leader(BaseModel):
    holder: str
    host: str
    pid: int | None
    epoch: int
    lease_age_s: float | None
    leading_for_s: float | None
    expires_in_s: float | None


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    version: str
    network_id: str | None = None
    replica: ReplicaRef | None
    database: str = Field(description="sqlite or postgresql; `down` while it cannot be reached")
    scheduler: SchedulerStatus
    leader: Leader | None
    error: str | None = None


class DiscoveredPool(BaseModel):
    """A backend's partition (Slurm), resource (Ray) or a peer platform's pool described as a pool
    (nothing stored): complete what it lacks (device model, price) and register it. The common
    fields are typed; a connector adds its own (`partition`/`gres`, `resource`, `place`, …)."""
    model_config = ConfigDict(extra="allow")

    name: str
    device_kind: DeviceKind
    units_per_node: int
    nodes: int
    memory_gb_per_node: int
    device_model: str | None = None
    domestic: bool | None = None
    max_walltime_s: int | None = None
    arch: str | None = None
    features: list[str] = Field(default_factory=list)
    partition: str | None = Field(None, description="Slurm: the partition")
    gres: str | None = Field(None, description="Slurm: the nodes' generic resources")
    resource: str | None = Field(None, description="Ray: the custom resource")
    place: str | None = Field(None, description="a peer platform: its center/pool")


class DiscoveredPools(BaseModel):
    pools: list[DiscoveredPool]


class CapacityFigures(BaseModel):
    total_pflops: dict[str, float] = Field(description="per precision (fp64, fp32, fp16, int8)")
    free_pflops: dict[str, float]
    total_units: int
    free_units: int


class Capacity(BaseModel):
    unit: Literal["PFLOPS"]
    total: CapacityFigures
    domestic: CapacityFigures
    offline: CapacityFigures
    by_kind: dict[str, CapacityFigures]
    by_district: dict[str, CapacityFigures]
    by_device: dict[str, CapacityFigures]


class Me(BaseModel):
    user_id: int
    username: str
    role: Role
    tenant_id: int | None
    center_id: int | None
    token_id: int | None = Field(description="the token the caller signed in with (null: a "
                                             "password session)")
    platform_account: bool


class PeerQuote(BaseModel):
    wait_s: float | None
    finish_s: float | None
    cost_fen: int | None
    reason: str


class Candidate(BaseModel):
    """One pool as seen for one job: whether it could run it, why not, its figures. (Figures a
    placement recorded before a field existed read as its default.)"""
    pool_id: int
    pool: str
    center_id: int
    feasible: bool
    reasons: list[str] = Field(default_factory=list)
    fits_now: bool = False
    wait_s: float | None = None
    runtime_s: float | None = None
    finish_s: float | None = None
    cost_fen: int | None = None
    energy_wh: int | None = None
    score: float | None = None
    chosen: bool = False
    misses_deadline: bool = False
    transfer_s: float = 0.0
    beyond_walltime: bool = False
    quote: PeerQuote | None = None


class Explanation(BaseModel):
    """Why a job goes (or would go) where it does: every pool considered and the choice."""
    policy: Policy
    message: str = ""
    chosen_pool_id: int | None = None
    target_pool_id: int | None = None
    position: int | None = None
    moved_from_pool_id: int | None = None
    estimated_start: datetime | None = None
    weights: dict[str, float] | None = None
    candidates: list[Candidate] = Field(default_factory=list)


class PlacementRecord(Explanation):
    """A placement suanli made, with the reasons it had then."""
    id: int
    pool_id: int
    center_id: int
    decided_at: datetime


class PlacementHistory(BaseModel):
    job_id: int
    state: JobState
    placements: list[PlacementRecord]
    current: Explanation | None = Field(description="a queued job: the evaluation now; else "
                                                    "the last placement")


# -- peers and the network --------------------------------------------------------------------------

class PeerHelloAnswer(BaseModel):
    network_id: str = Field(description="this platform's identifier")


class ReportReceived(BaseModel):
    received_at: datetime


class NodeReport(PeerReportIn):
    """A node's report (as a member sends it to its parent): aggregates only, never a tenant."""
    model_config = ConfigDict(extra="ignore")


class MemberReport(NodeReport):
    peer: str
    received_at: datetime


class NetworkView(BaseModel):
    self_: NodeReport | None = Field(alias="self", description="this node (null: no members)")
    members: list[MemberReport]
    map: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PeerDiscovered(BaseModel):
    name: str
    changed: int = Field(description="how many of our pools of the peer changed")


class ReconcileDifference(BaseModel):
    run_key: str
    ours_fen: int | None
    theirs_fen: int | None
    why: str


class Reconciliation(BaseModel):
    month: str
    peer: str
    runs: int
    peer_runs: int
    ours_fen: int
    theirs_fen: int
    same: bool
    differences: list[ReconcileDifference]


class PeerWays(BaseModel):
    """A peer platform, each way it is one (it may lend to us and borrow from us)."""
    name: str
    ways: list[PeerPublic]
