"""API models: what clients send (XCreate) and what they get back (XPublic). Not DB rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ..domain.enums import CenterKind, CenterStatus, DeviceKind, Policy, Precision, Role, RunState
from ..domain.jobstate import JobState

BIG = 10**12
MAX_ID = 2**31 - 1  # ids are INTEGER on PostgreSQL
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Tflops = Annotated[float | None, Field(default=None, ge=0, le=1e6)]

# Money is integer fen, and only a JSON integer is money: 100.0, "100" and true are refused (422
# naming the field) instead of being coerced. Every money field of a request uses it, with its own
# bounds: Annotated[Fen, Field(ge=..., le=...)].
Fen = Annotated[int, Strict()]

# Free-form JSON objects (a connector's settings, a voucher programme's rules) are bounded before
# anything walks them: a deeply nested value must be a clear 422, not a RecursionError.
JSON_MAX_DEPTH = 8  # {"a": {"b": 1}} is depth 2
JSON_MAX_VALUES = 1000  # keys, items and scalars, all levels together
JSON_MAX_KEY = 128
JSON_MAX_STRING = 8192


def _too_big(why: str) -> PydanticCustomError:
    return PydanticCustomError("json_too_big", "must be a JSON object {why}", {"why": why})


def bounded_json(value: Any) -> Any:
    """Refuse a JSON value nested deeper than JSON_MAX_DEPTH, with more than JSON_MAX_VALUES
    values, or with a key or string over its length limit. Iterative: depth costs no stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if isinstance(item, dict | list):
            if depth > JSON_MAX_DEPTH:
                raise _too_big(f"nested at most {JSON_MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                if any(isinstance(k, str) and len(k) > JSON_MAX_KEY for k in item):
                    raise _too_big(f"with keys of at most {JSON_MAX_KEY} characters")
                children = list(item.values())
            else:
                children = item
            if seen + len(children) > JSON_MAX_VALUES:
                raise _too_big(f"of at most {JSON_MAX_VALUES} values in all")
            stack.extend((c, depth + 1) for c in children)
        elif isinstance(item, str) and len(item) > JSON_MAX_STRING:
            raise _too_big(f"with strings of at most {JSON_MAX_STRING} characters")
    return value


JsonObject = Annotated[dict[str, Any], BeforeValidator(bounded_json)]


def _no_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list | tuple):
        return all(_no_nul(v) for v in value)
    if isinstance(value, dict):
        return all(_no_nul(k) and _no_nul(v) for k, v in value.items())
    return True


T = TypeVar("T")
StatusSource = Literal["operator", "health"]  # who set a center's status
ReplicaRole = Literal["api", "serve", "engine"]
ProgrammeMode = Literal["point_of_sale", "post_hoc"]  # vouchers paid at billing, or claimed after


class Page(BaseModel, Generic[T]):
    """One page of a list: every list the API answers has this shape."""

    items: list[T]
    total: int = Field(description="how many there are in all (with the same filters)")
    limit: int
    offset: int


PageLimit = Annotated[int, Query(ge=1, le=1000, description="at most this many items")]
PageOffset = Annotated[int, Query(ge=0, le=10**9, description="skip this many first")]


def page_of(items: Sequence[Any], limit: int, offset: int) -> dict[str, Any]:
    """A page cut from a whole (short) list: the routes whose service returns every row."""
    return {"items": list(items[offset:offset + limit]), "total": len(items), "limit": limit,
            "offset": offset}


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text; refuse it everywhere, on every database.
        if not _no_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PoolCreate(Input):
    name: Slug
    device_kind: DeviceKind
    device_model: Annotated[str, Field(min_length=1, max_length=100)]
    domestic: bool = False
    units_per_node: Annotated[int, Field(ge=1, le=100_000)]
    nodes: Annotated[int, Field(ge=1, le=100_000)]
    memory_gb_per_node: Annotated[int, Field(ge=1, le=1_000_000)]
    price_fen_per_unit_hour: Annotated[Fen, Field(ge=0, le=BIG)]
    tflops_fp64: Tflops = None
    tflops_fp32: Tflops = None
    tflops_fp16: Tflops = None
    tflops_int8: Tflops = None
    watts_per_unit: Annotated[int, Field(ge=0, le=100_000)] = 300
    max_walltime_s: Annotated[int, Field(ge=1, le=365 * 86400)] = 7 * 86400
    arch: Annotated[str, Field(max_length=16, description="CPU architecture: x86_64, aarch64, "
                               "sw_64, loongarch64, riscv64 or ppc64le")] = "x86_64"
    features: Annotated[list[Annotated[str, Field(max_length=64)]], Field(
        max_length=100, description="what the pool offers, e.g. cuda-12.4, cann-8.0, mpi")] = Field(
        default_factory=list)
    environments: Annotated[dict[str, Annotated[str, Field(max_length=100_000)]], Field(
        max_length=50, description="named environments a job may ask for: {name: shell lines "
        "that activate it}")] = Field(default_factory=dict)


class CenterCreate(Input):
    slug: Slug
    name_zh: Name
    name_en: Name
    kind: CenterKind
    district: Annotated[str, Field(max_length=64)] = ""
    operator: Annotated[str, Field(max_length=200)] = ""
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = 1.3
    connector: Annotated[str, Field(min_length=1, max_length=32)] = "local"
    connector_config: JsonObject = Field(default_factory=dict)
    emulated: bool = False
    pools: Annotated[list[PoolCreate], Field(max_length=100)] = Field(default_factory=list)


class DiscoverRequest(Input):
    connector: Annotated[str, Field(min_length=1, max_length=32)]
    connector_config: JsonObject = Field(default_factory=dict)


class CenterStatusUpdate(Input):
    status: CenterStatus
    reason: Annotated[str, Field(max_length=500)] = ""


class PoolPublic(Output):
    id: int
    center_id: int
    name: str
    identifier: Annotated[str, BeforeValidator(lambda v: v or "")] = Field(
        "", description="its network identifier: NETWORK/center/pool (a peer platform's pool "
        "keeps the identifier that platform gave it)")
    device_kind: DeviceKind
    device_model: str
    domestic: bool
    tflops_fp64: float | None
    tflops_fp32: float | None
    tflops_fp16: float | None
    tflops_int8: float | None
    units_per_node: int
    nodes: int
    total_units: int = 0
    memory_gb_per_node: int
    price_fen_per_unit_hour: int
    watts_per_unit: int
    max_walltime_s: int
    arch: str = "x86_64"
    features: list[str] = Field(default_factory=list)
    environments: dict[str, str] = Field(default_factory=dict)
    peak_pflops: dict[str, float] = Field(default_factory=dict)
    used_units: int | None = None
    withdrawn_at: datetime | None = Field(None, description="when the peer platform that "
                                          "offered it stopped offering it (never placed on)")


class CenterPublic(Output):
    id: int
    slug: str
    identifier: str = Field("", description="its network identifier: NETWORK/slug (a peer "
                            "platform: that platform's own network identifier)")
    name_zh: str
    name_en: str
    kind: CenterKind
    district: str
    operator: str
    pue: float
    connector: str
    connector_config: dict[str, Any]
    status: CenterStatus
    status_reason: str
    status_source: StatusSource = "operator"
    health_failures: int = 0
    health_detail: str = ""
    health_checked_at: datetime | None = None
    offline_since: datetime | None = None
    emulated: bool
    created_at: datetime
    pools: list[PoolPublic] = Field(default_factory=list)
    peak_pflops: dict[str, float] = Field(default_factory=dict)


class TenantCreate(Input):
    name: Name
    credit_code: Annotated[str, Field(min_length=1, max_length=64)]
    district: Annotated[str, Field(max_length=64)] = ""
    contact_name: Annotated[str, Field(max_length=100)] = ""
    contact_email: Annotated[str, Field(max_length=200)] = ""
    contact_phone: Annotated[str, Field(max_length=40)] = ""
    credit_limit_fen: Annotated[Fen, Field(ge=0, le=10**12)] = 0


class TenantPublic(Output):
    id: int
    name: str
    credit_code: str
    district: str
    contact_name: str
    contact_email: str
    contact_phone: str
    created_at: datetime
    credit_limit_fen: int
    frozen_at: datetime | None
    frozen_reason: str
    kind: Literal["enterprise", "platform"] = Field(
        "enterprise", description="enterprise, or platform: a peer platform that borrows compute "
        "here (suanli peer invite)")
    peer_earlier_by_s: int | None = Field(None, description="home first: its jobs go to a peer "
                                          "platform's pool only when that finishes them more than "
                                          "this many seconds earlier (null: the platform's rule)")


class DepositIn(Input):
    tenant_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    amount_fen: Annotated[Fen, Field(ge=1, le=10**15)]
    reference: Annotated[str, Field(min_length=1, max_length=100)]


class TenantAccount(BaseModel):
    tenant_id: int
    prepaid_fen: int  # deposited and not yet spent
    owed_fen: int  # billed beyond the prepaid money
    deposited_fen: int
    billed_fen: int  # the tenant's share of its bills (vouchers paid the rest)
    credit_limit_fen: int  # what it may owe beyond its prepaid money
    held_fen: int  # cost estimates of its unfinished jobs, less what they were billed
    spendable_fen: int  # prepaid + credit limit − owed − held: what admission lets it commit


class QuotaPublic(BaseModel):
    device_kind: DeviceKind
    max_units: int
    in_use: int  # units the tenant's running jobs of this kind hold now
    updated_at: datetime


class QuotaSet(Input):
    max_units: Annotated[int, Field(ge=0, le=10_000_000)]


class UserCreate(Input):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{2,64}$")]
    role: Role
    tenant_id: Annotated[int | None, Field(ge=1, le=MAX_ID)] = None
    center_id: Annotated[int | None, Field(ge=1, le=MAX_ID)] = None
    display_name: Annotated[str, Field(max_length=200)] = ""
    password: Annotated[str | None, Field(min_length=8, max_length=200)] = None


class UserPublic(Output):
    id: int
    username: str
    display_name: str
    role: Role
    tenant_id: int | None
    center_id: int | None
    disabled: bool
    created_at: datetime


class UserStatusChange(Input):
    reason: Annotated[str, Field(max_length=500)] = ""


class TokenCreate(Input):
    name: Annotated[str, Field(max_length=100)] = ""
    user_id: Annotated[int | None, Field(ge=1, le=MAX_ID)] = None
    expires_in_s: Annotated[int | None, Field(
        ge=1, le=10 * 365 * 86400, description="the token expires this many seconds from now")] = None
    expires_at: Annotated[AwareDatetime | None, Field(
        description="or at this time (with a zone); never later than the token used to create it"
    )] = None


class TokenPublic(Output):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="kept to about a minute")
    revoked_at: datetime | None
    expires_at: datetime | None
    parent_id: int | None = Field(description="the token that created this one: revoking it "
                                  "revokes this one")


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret: shown only in this response")


class ResourcesIn(Input):
    device: DeviceKind
    model: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    units: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    nodes: Annotated[int, Field(ge=1, le=100_000)] = 1
    memory_gb: Annotated[int | None, Field(ge=1, le=1_000_000)] = None


class JobSubmit(Input):
    name: Name
    command: Annotated[
        list[Annotated[str, Field(max_length=100_000)]], Field(min_length=1, max_length=1000)
    ]
    resources: ResourcesIn
    walltime_s: Annotated[int, Field(ge=1, le=365 * 86400)] = 3600
    precision: Precision = Precision.FP32
    policy: Policy = Policy.BALANCED
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    domestic_only: bool = False
    district: Annotated[str | None, Field(max_length=64)] = None
    deadline: datetime | None = None
    budget_fen: Annotated[Fen | None, Field(ge=0, le=BIG)] = None
    requeue: bool = True
    data_site: Annotated[str | None, Field(max_length=64, description="the center (slug) holding "
                                                                       "the job's input data")] = None
    data_gb: Annotated[float | None, Field(gt=0, le=10_000_000, description="its size in GB")] = None
    # A task's own work (docs/tasks.md); checked in depth by the service (domain/task.py).
    env: Annotated[JsonObject | None, Field(description="variables: {NAME: value}")] = None
    setup: Annotated[str | None, Field(max_length=100_000, description="a shell script run "
                                       "before the command; the job fails if it does")] = None
    workdir: Annotated[str | None, Field(max_length=64, description="SHA-256 of an uploaded "
                                         "work folder (kind workdir), unpacked where the job "
                                         "starts")] = None
    inputs: Annotated[list[JsonObject], Field(max_length=100, description=
                      '[{"artifact": sha256 | "dataset": name, "path": "rel/dir"}]')] = []
    outputs: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(
        max_length=100, description="paths or globs in the work folder kept when the job ends")] = []
    constraints: Annotated[JsonObject | None, Field(description="what the pool must offer: "
                                                    '{"arch": "x86_64", "features": ["cuda-12.4"]}')] = None
    environment: Annotated[str | None, Field(max_length=64, description="a named environment "
                                             "the pool activates before the job (e.g. pytorch-2.4)")] = None
    array: Annotated[str | None, Field(max_length=100, description="one job per index: "
                                       "'0-99%10' (at most 10 at once), '1,3,5-7'")] = None
    centers: Annotated[list[Annotated[str, Field(max_length=130)]] | None, Field(
        max_length=50, description="run only at these centers (slug) or pools (center/pool)")] = None
    exclude_centers: Annotated[list[Annotated[str, Field(max_length=130)]] | None, Field(
        max_length=50, description="never at these centers (slug) or pools (center/pool)")] = None

    @field_validator("command")
    @classmethod
    def _first_not_empty(cls, v: list[str]) -> list[str]:
        if not v[0]:
            raise ValueError("the program (first element) must not be empty")
        if any("\x00" in a for a in v):
            raise ValueError("arguments must not contain NUL characters")
        return v


class DagStageSubmit(JobSubmit):
    """One stage: a job (its `name` is the stage's name; with `array`, a job array) and the
    stages it waits for. An input may be `{"stage": NAME, "path": DIR}`: the outputs of NAME, a
    stage it depends on (directly or through others)."""

    depends_on: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)] = []


class DagSubmit(Input):
    name: Name
    stages: Annotated[list[DagStageSubmit], Field(min_length=1, max_length=100)]


class ArraySubmitted(BaseModel):
    """What submitting an array answers: the array and its tasks' job ids, by index."""

    array_id: int
    jobs: list[int]


class ArrayPublic(BaseModel):
    id: int
    tenant_id: int
    name: str
    spec: str
    size: int
    max_running: int | None
    submitted_at: datetime
    states: dict[str, int]
    jobs: list[int]


class DagStagePublic(BaseModel):
    name: str
    depends_on: list[str]
    # the stage job's state (an array stage: its tasks', see services/dags.py stage_state), or
    # WAITING (parents not done) or CANCELLED (never queued)
    state: str
    job_id: int | None  # a one-job stage's job
    array: str | None = None  # an array stage's spec ("0-9%2")
    array_id: int | None = None
    jobs: list[int] = Field(default_factory=list)  # its job, or its array's tasks by index
    tasks: int = 1  # how many jobs the stage is
    done: int = 0  # how many of them completed
    reads: list[str] = Field(default_factory=list)  # the stages whose outputs it reads
    device: str
    units: int
    center: str | None


class DagPublic(BaseModel):
    id: int
    tenant_id: int
    user_id: int
    name: str
    state: Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    reason: str
    submitted_at: datetime
    finished_at: datetime | None
    stages: list[DagStagePublic]


DagPage = Page[DagPublic]


class QueueInfo(BaseModel):
    """Where a queued job waits: the pool it is committed to, its place in that pool's queue, and
    when it should start if running jobs use their whole walltime (null: too far back to say)."""

    pool: str
    position: int
    estimated_start: datetime | None


class JobPublic(Output):
    id: int
    tenant_id: int
    user_id: int
    name: str
    command: list[str]
    resources: dict[str, Any]
    walltime_s: int
    precision: Precision
    policy: Policy
    priority: int
    domestic_only: bool
    district: str | None
    deadline: datetime | None
    budget_fen: int | None
    requeue: bool
    state: JobState
    state_reason: str
    exit_code: int | None
    submitted_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    current_run_id: int | None
    center: str | None = None
    queue: QueueInfo | None = None
    dag_id: int | None = None
    dag_stage: str | None = None
    data_site: str | None = None
    data_gb: float | None = None
    # A task's own work (docs/tasks.md); of its variables only the names (values may be secrets)
    env_names: list[str] = Field(default_factory=list)
    setup: str | None = None
    workdir: str | None = None
    inputs: list[dict[str, str]] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    constraints: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None
    centers: list[str] = Field(default_factory=list)
    exclude_centers: list[str] = Field(default_factory=list)
    array_id: int | None = None
    array_index: int | None = None


JobPage = Page[JobPublic]


class JobEventPublic(Output):
    at: datetime
    from_state: str | None
    to_state: str
    reason: str


class RunPublic(Output):
    id: int
    job_id: int
    center_id: int
    pool_id: int
    attempt: int
    run_key: str
    external_id: str | None
    state: RunState
    reason: str
    units: int
    nodes: list[int]
    devices: list[int]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None


class JobDetail(JobPublic):
    history: list[JobEventPublic] = Field(default_factory=list)
    runs: list[RunPublic] = Field(default_factory=list)


class LogChunkPublic(BaseModel):
    data: str
    offset: int
    next_offset: int
    eof: bool
    run_id: int | None


class UsagePublic(Output):
    id: int
    run_id: int
    job_id: int
    tenant_id: int
    center_id: int
    pool_id: int
    units: int
    started_at: datetime
    ended_at: datetime
    unit_seconds: int
    precision: Precision
    pflops_hours: float
    energy_wh: int
    pue: float
    price_fen_per_unit_hour: int
    amount_fen: int


class UsageTotals(BaseModel):
    """What every run matching the filters adds up to (all pages, not only this one)."""

    runs: int
    unit_seconds: int
    unit_hours: float
    pflops_hours: float = Field(description="standard PFLOPS-hours (FP16 dense)")
    energy_wh: int
    amount_fen: int


class UsagePage(Page[UsagePublic]):
    """A page of metered runs, with the totals of every run the filters match."""

    totals: UsageTotals


class ErrorBody(BaseModel):
    error: str
    field: str | None = None
    detail: Any = None


# -- money: prices, credit, vouchers, settlement --------------------------------------------------

PositiveFen = Annotated[Fen, Field(ge=1, le=10**13)]
Reason = Annotated[str, Field(max_length=500)]
Month = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$", description="a month, e.g. 2026-11")]


class PriceSet(Input):
    price_fen_per_unit_hour: Annotated[Fen, Field(ge=0, le=10**9)]
    valid_from: datetime | None = Field(default=None, description="default: now; never in the past")
    note: Annotated[str, Field(max_length=200)] = ""


class CreditLimitSet(Input):
    credit_limit_fen: Annotated[Fen, Field(ge=0, le=10**12)]


class ProgrammeCreate(Input):
    name: Name
    year: Annotated[int, Field(ge=2000, le=2999)]
    budget_fen: PositiveFen = 2_000_000_000
    mode: ProgrammeMode = "point_of_sale"
    rules: JsonObject | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class RulesSet(Input):
    rules: JsonObject


class ApplicationCreate(Input):
    programme_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    requested_fen: PositiveFen
    planned_spend_fen: PositiveFen
    planned_use: Annotated[str, Field(min_length=1, max_length=2000)]


class ReviewIn(Input):
    decision: Literal["approve", "reject"]
    approved_fen: PositiveFen | None = None
    reason: Reason = ""


class ClaimIn(Input):
    period: Annotated[str, Field(pattern=r"^\d{4}-(\d{2}|Q[1-4])$", description="2026-11 or 2026-Q4")]


class ReasonIn(Input):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class RelatedPartyIn(Input):
    center_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    relation: Annotated[str, Field(min_length=1, max_length=200)]


class SettleIn(Input):
    month: Month
    preview: bool = Field(default=False, description="compute the statements (any month so far) "
                          "without storing or paying them")


class ReplicaPublic(Output):
    """A process of the control plane, as its own heartbeat last reported it."""

    id: str = Field(description="host:pid:random (an engine's is its lease holder name)")
    role: ReplicaRole = Field(description="api (serve --no-engine), serve (with an engine) or engine")
    host: str
    pid: int
    version: str
    started_at: datetime
    seen_at: datetime
    age_s: float = Field(description="seconds since its last heartbeat")
    leading: bool | None = Field(None, description="engines: whether it held the lease")
    epoch: int | None = None
    last_pass_at: datetime | None = None
    last_pass_ms: int | None = None


class LeaderPublic(Output):
    holder: str
    host: str
    pid: int | None
    epoch: int
    lease_age_s: float | None
    leading_for_s: float | None
    expires_in_s: float | None


class LastPass(Output):
    at: datetime
    ms: int | None
    by: str


class CenterHealth(Output):
    slug: str
    status: CenterStatus
    status_reason: str
    status_source: StatusSource
    health_failures: int
    health_detail: str
    health_checked_at: datetime | None
    health_ok_at: datetime | None
    offline_since: datetime | None


class ControlPlane(Output):
    """`GET /api/v1/control-plane` (platform admin)."""

    at: datetime
    window_s: float = Field(description="processes seen within this many seconds are listed")
    replicas: list[ReplicaPublic]
    leader: LeaderPublic | None
    last_pass: LastPass | None
    centers: list[CenterHealth]


class PeerRuleSet(Input):
    earlier_by_s: Annotated[int | None, Field(ge=0, le=30 * 86400, description="seconds; null: "
                                              "the platform's rule")] = None


class PeerHello(Input):
    network_id: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,47}$")]


class PeerInvite(Input):
    name: Slug
    credit_limit_fen: Annotated[Fen, Field(ge=0, le=10**12, description="what the peer may owe "
                                            "between settlements (its jobs are postpaid)")] = 0


class PeerInvited(Output):
    name: str
    token: str = Field(description="the join token: shown only in this response; give it to the "
                       "peer's operator (suanli peer add NAME --url URL --token TOKEN there)")
    tenant_id: int


class PeerAdd(Input):
    name: Slug
    url: Annotated[str, Field(min_length=1, max_length=500, description="the peer's base URL: "
                              "https (http only to 127.0.0.1)")]
    token: Annotated[str, Field(min_length=1, max_length=500, description="the join token the "
                                "peer invited us with")]
    report: bool = Field(False, description="report our capacity, utilisation and monthly usage "
                         "totals to it (a parent node; never tenant details)")
    margin_bp: Annotated[int, Field(ge=0, le=10_000, description="our margin on its prices, in "
                                    "basis points (100 = 1 %); 0: pass-through")] = 0


class PeerPublic(Output):
    name: str
    direction: Literal["lends", "borrows"] = Field(
        description="lends: it lends us compute (a center of ours); borrows: it borrows ours (a "
        "platform account here)")
    network_id: str
    url: str
    center_id: int | None
    center: str | None
    tenant_id: int | None
    status: str
    report: bool
    margin_bp: int
    pools: int
    created_at: datetime
    discovered_at: datetime | None
    discovery_error: str
    removed_at: datetime | None


NonNegative = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Pflops = dict[Precision, NonNegative]


class UsageMonth(Input):
    month: Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
    runs: Annotated[int, Field(ge=0, le=10**12)]
    unit_hours: NonNegative
    pflops_hours: NonNegative
    gross_fen: Annotated[Fen, Field(ge=0, le=10**15)]


class Exchange(Input):
    peer: Annotated[str, Field(max_length=64)]
    network_id: Annotated[str, Field(max_length=64)]
    lent_runs: Annotated[int | None, Field(ge=0, le=10**12)] = None
    borrowed_runs: Annotated[int | None, Field(ge=0, le=10**12)] = None


class CapacityReport(Input):
    total_pflops: Pflops
    free_pflops: Pflops
    by_kind: Annotated[dict[Annotated[str, Field(max_length=32)], Pflops], Field(max_length=16)]


class PeerReportIn(Input):
    """A member node's report to its parent (`suanli peer add --report`): aggregates only."""

    network_id: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,47}$")]
    name: Annotated[str, Field(max_length=100)] = ""
    location: Annotated[list[Annotated[float, Field(ge=-180, le=180)]] | None,
                        Field(min_length=2, max_length=2)] = None
    at: AwareDatetime
    capacity: CapacityReport
    units: Annotated[int, Field(ge=0, le=10**12)]
    units_in_use: Annotated[int, Field(ge=0, le=10**12)]
    utilisation: Annotated[float, Field(ge=0, le=1)]
    usage: Annotated[list[UsageMonth], Field(max_length=24)]
    exchanged: Annotated[list[Exchange], Field(max_length=200)] = []
