"""The tables. API schemas live in api/schemas.py; these are storage rows only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..domain.enums import DeviceKind, Precision
from ..domain.model import PoolSpec
from .types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON
    }


class Center(Base):
    __tablename__ = "centers"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    district: Mapped[str] = mapped_column(String(64), default="")
    operator: Mapped[str] = mapped_column(String(200), default="")
    pue: Mapped[float] = mapped_column(Float, default=1.3)
    connector: Mapped[str] = mapped_column(String(32), default="local")
    connector_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="online")
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    emulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # Health: who set the status ("operator" or "health"), consecutive failed checks, when.
    status_source: Mapped[str] = mapped_column(String(16), default="operator")
    health_failures: Mapped[int] = mapped_column(Integer, default=0)
    health_detail: Mapped[str] = mapped_column(String(500), default="")
    health_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    health_ok_at: Mapped[datetime | None] = mapped_column(nullable=True)
    offline_since: Mapped[datetime | None] = mapped_column(nullable=True)

    pools: Mapped[list[Pool]] = relationship(back_populates="center", order_by="Pool.id")


class Pool(Base):
    __tablename__ = "pools"
    __table_args__ = (UniqueConstraint("center_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    device_kind: Mapped[str] = mapped_column(String(8))
    device_model: Mapped[str] = mapped_column(String(100))
    domestic: Mapped[bool] = mapped_column(Boolean, default=False)
    tflops_fp64: Mapped[float | None] = mapped_column(Float, nullable=True)
    tflops_fp32: Mapped[float | None] = mapped_column(Float, nullable=True)
    tflops_fp16: Mapped[float | None] = mapped_column(Float, nullable=True)
    tflops_int8: Mapped[float | None] = mapped_column(Float, nullable=True)
    units_per_node: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[int] = mapped_column(Integer)
    memory_gb_per_node: Mapped[int] = mapped_column(Integer)
    price_fen_per_unit_hour: Mapped[int] = mapped_column(BigInteger)
    watts_per_unit: Mapped[int] = mapped_column(Integer, default=300)
    max_walltime_s: Mapped[int] = mapped_column(Integer, default=7 * 24 * 3600)
    created_at: Mapped[datetime]
    # What programs run there: the CPU architecture (x86_64, aarch64, sw_64, ...), the software
    # and hardware features it offers (cann-8.0, cuda-12.4, mpi, ...), and named environments a
    # job may ask for: {name: shell lines that activate it (module load ..., source ...)}.
    arch: Mapped[str] = mapped_column(String(16), default="x86_64")
    features: Mapped[list[Any]] = mapped_column(JSON, default=list)
    environments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Its network identifier when it is not ours (a peer's pool keeps the peer's, e.g.
    # CN-SD-YT/yt-ai/a100); null: `{network_id}/{center}/{pool}`. And when its peer stopped
    # offering it: a withdrawn pool is never a candidate again (migration 0015).
    identifier: Mapped[str | None] = mapped_column(String(200), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(nullable=True)

    center: Mapped[Center] = relationship(back_populates="pools")

    @property
    def total_units(self) -> int:
        return self.units_per_node * self.nodes

    def spec(self) -> PoolSpec:
        return PoolSpec(
            device_kind=DeviceKind(self.device_kind),
            device_model=self.device_model,
            domestic=self.domestic,
            units_per_node=self.units_per_node,
            nodes=self.nodes,
            memory_gb_per_node=self.memory_gb_per_node,
            price_fen_per_unit_hour=self.price_fen_per_unit_hour,
            tflops_fp64=self.tflops_fp64,
            tflops_fp32=self.tflops_fp32,
            tflops_fp16=self.tflops_fp16,
            tflops_int8=self.tflops_int8,
            watts_per_unit=self.watts_per_unit,
            max_walltime_s=self.max_walltime_s,
            arch=self.arch or "x86_64",
            features=frozenset(self.features or ()),
            environments=frozenset(self.environments or {}),
        )

    def pflops(self, precision: Precision) -> float:
        return self.spec().peak_pflops(precision)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    district: Mapped[str] = mapped_column(String(64), default="")
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_email: Mapped[str] = mapped_column(String(200), default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime]
    # What the tenant may owe beyond its prepaid money (admission checks against both).
    credit_limit_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # The sum of its unfinished jobs' holds (cost estimates not yet billed), kept with them.
    held_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Frozen by an auditor: it can neither apply for nor redeem vouchers until unfrozen.
    frozen_at: Mapped[datetime | None] = mapped_column(nullable=True)
    frozen_reason: Mapped[str] = mapped_column(String(500), default="")
    # Artifact storage it may use (set by the platform admin; null: the platform's default).
    storage_quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    storage_quota_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # `enterprise`, or `platform`: another suanli instance that borrows compute here (a peer
    # invited with `suanli peer invite`; migration 0015).
    kind: Mapped[str] = mapped_column(String(16), default="enterprise",
                                      server_default="enterprise")
    # Its jobs go to a peer platform's pool only when it finishes them this many seconds
    # earlier than the best home pool (null: the platform's SUANLI_PEERS_EARLIER_BY_S).
    peer_earlier_by_s: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TenantQuota(Base):
    """The most units of one device kind a tenant may hold at once (running jobs)."""

    __tablename__ = "tenant_quotas"
    __table_args__ = (UniqueConstraint("tenant_id", "device_kind", name="uq_tenant_quota"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    device_kind: Mapped[str] = mapped_column(String(8))
    max_units: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The token whose bearer created this one: revoking or expiring it ends this one too.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id"), nullable=True, index=True)

    user: Mapped[User] = relationship()


class SignInFailure(Base):
    """One failed (or still being checked) sign-in, under a throttle key: `user:NAME` or
    `address:IP`. Rows older than the throttle's window no longer count and are pruned."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_submitted_at_tenant", "submitted_at", "tenant_id"),  # the dashboard's days
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    command: Mapped[list[Any]] = mapped_column(JSON)
    device_kind: Mapped[str] = mapped_column(String(8))
    device_model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    units: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[int] = mapped_column(Integer, default=1)
    memory_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    walltime_s: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(8), default="fp32")
    policy: Mapped[str] = mapped_column(String(16), default="balanced")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    domestic_only: Mapped[bool] = mapped_column(Boolean, default=False)
    district: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    budget_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requeue: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(String(500), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    current_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The pool network placement committed the queued job to (it queues there; cleared when the
    # pool can no longer run it, and the job is placed again).
    target_pool_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A stage of a DAG job: the DAG and the stage's name (null for a plain job).
    dag_id: Mapped[int | None] = mapped_column(ForeignKey("dags.id"), nullable=True, index=True)
    dag_stage: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data_site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The most the job may still cost, held against the tenant's money while it is not finished.
    hold_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bring-your-own-work (a task file): variables, a setup script run before the command, the
    # packed work folder (an artifact's SHA-256), what is mounted into it
    # ([{"artifact": sha256 | "dataset": name, "path": "rel/dir"}]), what is kept when it ends
    # (globs relative to the work folder), what the pool must offer ({"arch": ..., "features":
    # [...]}), and the named environment to activate there.
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    setup: Mapped[str | None] = mapped_column(Text, nullable=True)
    workdir_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    outputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A task of an array job: the array and this task's index (SUANLI_ARRAY_INDEX).
    array_id: Mapped[int | None] = mapped_column(ForeignKey("job_arrays.id"), nullable=True,
                                                 index=True)
    array_index: Mapped[int | None] = mapped_column(Integer, nullable=True)


class JobArray(Base):
    """Tasks of one job submitted together (`array: 0-99%10`): at most `max_running` of them
    are placed at once."""

    __tablename__ = "job_arrays"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[str] = mapped_column(String(100))  # as written: "0-99%10", "1,3,5-7"
    size: Mapped[int] = mapped_column(Integer)
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime]


class Artifact(Base):
    """Bytes a tenant stored, by content: a work folder, an upload, a job's outputs. One row per
    tenant and content (a second upload of the same bytes is the same artifact)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("tenant_id", "sha256", name="uq_artifact_tenant_sha"),
                      Index("ix_artifacts_expires_at", "expires_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # upload, workdir, outputs, dataset
    name: Mapped[str] = mapped_column(String(200), default="")
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime]
    # The job whose outputs these are (null otherwise), and when they may be removed.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Dataset(Base):
    """Named data a tenant's jobs read: uploaded (an artifact) or already living at centers."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_dataset_tenant_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime]


class DatasetLocation(Base):
    """A center holding a copy of a dataset (where it was registered, or copied once)."""

    __tablename__ = "dataset_locations"
    __table_args__ = (UniqueConstraint("dataset_id", "center_id", name="uq_dataset_location"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"))
    path: Mapped[str] = mapped_column(String(1000), default="")
    present_since: Mapped[datetime]


class Dag(Base):
    """A job made of stages with dependencies; each stage is a job, queued when its parents
    have completed."""

    __tablename__ = "dags"
    __table_args__ = (Index("ix_dags_tenant_id_id", "tenant_id", "id"), Index("ix_dags_state", "state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    stages: Mapped[list[Any]] = mapped_column(JSON)  # [{name, depends_on, job: {...}}] in order
    state: Mapped[str] = mapped_column(String(16))  # RUNNING, COMPLETED, FAILED, CANCELLED
    reason: Mapped[str] = mapped_column(String(500), default="")
    submitted_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")


class Placement(Base):
    __tablename__ = "placements"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"))
    decided_at: Mapped[datetime]
    policy: Mapped[str] = mapped_column(String(16))
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_state", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id"))
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"), index=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    run_key: Mapped[str] = mapped_column(String(64), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    units: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[list[Any]] = mapped_column(JSON)
    devices: Mapped[list[Any]] = mapped_column(JSON)
    memory_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    walltime_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # An attempt given up while its center was unreachable: cancel it there when it is back.
    stale: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the run's declared outputs were packed into (an artifact of the job's tenant).
    outputs_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outputs_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The lease epoch of the engine leader that placed it (engine/lease.py); None before 0013.
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_tenant_id_id", "tenant_id", "id"),
                      Index("ix_usage_ended_at", "ended_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # One record per run, enforced by the database: a run is metered exactly once.
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)
    # Copies of the run's job, tenant, center and pool, without foreign keys: billing writes
    # this table at thousands of rows a second (migration 0009).
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    center_id: Mapped[int] = mapped_column(Integer, index=True)
    pool_id: Mapped[int] = mapped_column(Integer)
    units: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    unit_seconds: Mapped[int] = mapped_column(BigInteger)
    precision: Mapped[str] = mapped_column(String(8))
    pflops_hours: Mapped[float] = mapped_column(Float)
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    pue: Mapped[float] = mapped_column(Float)
    price_fen_per_unit_hour: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime]
    # The sum of the account's postings, kept in the same transaction as each posting (a cache
    # that `audit verify` and the trial balance check against the postings themselves).
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(Base):
    """One double-entry transaction; its postings sum to zero. Never updated or deleted."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)  # posted at most once
    at: Mapped[datetime]
    memo: Mapped[str] = mapped_column(String(500), default="")
    refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), nullable=True)


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys (migration 0009): postings are written only by `ledger.post_many`, with
    # their transaction; `audit verify` checks that each one's transaction and account exist.
    transaction_id: Mapped[int] = mapped_column(Integer, index=True)
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class PriceList(Base):
    """A pool's price from `valid_from` until the next version's: runs are billed at the price
    valid when they started."""

    __tablename__ = "price_lists"
    __table_args__ = (UniqueConstraint("pool_id", "valid_from", name="uq_price_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), index=True)
    price_fen_per_unit_hour: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[datetime]
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class VoucherProgramme(Base):
    """A year's compute-voucher programme: its pool, mode, and versioned rules."""

    __tablename__ = "voucher_programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    budget_fen: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(16))  # point_of_sale | post_hoc
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    rules_version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    created_at: Mapped[datetime]


class VoucherRules(Base):
    """One version of a programme's rules (never edited: a change is a new version)."""

    __tablename__ = "voucher_rules"
    __table_args__ = (UniqueConstraint("programme_id", "version", name="uq_voucher_rules_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("voucher_programmes.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class VoucherApplication(Base):
    __tablename__ = "voucher_applications"
    __table_args__ = (Index("ix_voucher_applications_programme_state", "programme_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("voucher_programmes.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_fen: Mapped[int] = mapped_column(BigInteger)
    planned_spend_fen: Mapped[int] = mapped_column(BigInteger)
    planned_use: Mapped[str] = mapped_column(String(2000))
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | partly_approved | rejected
    approved_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    reviewer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]


class VoucherGrant(Base):
    __tablename__ = "voucher_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("voucher_programmes.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("voucher_applications.id"), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | expired
    expired_at: Mapped[datetime | None] = mapped_column(nullable=True)


class VoucherClaim(Base):
    """A post-hoc (奖补) claim: the subsidy on fees a tenant paid in one settlement period."""

    __tablename__ = "voucher_claims"
    __table_args__ = (UniqueConstraint("grant_id", "period", name="uq_voucher_claim_period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("voucher_grants.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))  # 2026-11 or 2026-Q4
    runs: Mapped[int] = mapped_column(Integer)
    fees_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    ledger_tx_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]


class VoucherRedemption(Base):
    """The voucher's part of one run's bill. One per run, enforced by the database: no run is
    subsidised twice."""

    __tablename__ = "voucher_redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("voucher_grants.id"), index=True)
    # Copies of the grant's programme and tenant and the run's center (no foreign keys: 0009).
    programme_id: Mapped[int] = mapped_column(Integer, index=True)
    tenant_id: Mapped[int] = mapped_column(Integer, index=True)
    center_id: Mapped[int] = mapped_column(Integer)
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("voucher_claims.id"), nullable=True)
    bill_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    ratio_bp: Mapped[int] = mapped_column(Integer)
    rules_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    clawed_back_at: Mapped[datetime | None] = mapped_column(nullable=True)
    clawback_reason: Mapped[str] = mapped_column(String(500), default="")


class RelatedParty(Base):
    """A declared relation between a tenant and a center (an owner, a subsidiary): vouchers are
    never redeemed on runs at a related center."""

    __tablename__ = "related_parties"
    __table_args__ = (UniqueConstraint("tenant_id", "center_id", name="uq_related_party"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"))
    relation: Mapped[str] = mapped_column(String(200))
    declared_at: Mapped[datetime]
    declared_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Statement(Base):
    """A monthly statement: per center (what the platform pays it) or per tenant (the invoice)."""

    __tablename__ = "statements"
    __table_args__ = (UniqueConstraint("month", "party", "party_id", name="uq_statement"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # 2026-11
    party: Mapped[str] = mapped_column(String(8))  # center | tenant
    party_id: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    unit_seconds: Mapped[int] = mapped_column(BigInteger)
    pflops_hours: Mapped[float] = mapped_column(Float)
    gross_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    adjustments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    net_fen: Mapped[int] = mapped_column(BigInteger)
    ledger_tx_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]


class AuditEntry(Base):
    """The tamper-evident log: each entry's hash covers its fields and the previous entry's hash."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 of `hash` under the platform's audit key (which the database does not hold):
    # NULL only for entries written before sealing existed (migration 0016)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditHead(Base):
    """One row: the last entry of the audit log (locking it serializes appends; deleting the
    log's tail directly in the database no longer matches it)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(BigInteger, default=0)
    # HMAC-SHA256 of (last_id, last_hash, entries) under the audit key; NULL when the head is not
    # sealed (an upgraded log, or one whose seal no longer matched: see services/audit.py)
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True)


__all__ = [
    "ApiToken",
    "Base",
    "Center",
    "Job",
    "JobEvent",
    "Placement",
    "Pool",
    "Run",
    "Tenant",
    "UsageRecord",
    "User",
]


class EngineLease(Base):
    """The engine leader's lease: a single row (id 1, created by migration 0013). `holder` is the
    leading candidate (`host:pid:random`, None when free), `epoch` grows by one at every
    acquisition; a leader's writes commit only while its holder and epoch are still these and
    `expires_at` is ahead (engine/lease.py)."""

    __tablename__ = "engine_lease"

    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    acquired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    renewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Replica(Base):
    """A process of the control plane as it last reported itself (migration 0014): an API
    replica (`api`), an all-in-one server (`serve`) or an engine candidate (`engine`). Each
    writes its row at start and every `heartbeat_s`, and deletes it on a clean stop; an engine
    adds whether it led, its epoch and its last pass. Only the processes write it (no API route
    does); `suanli status` lists the rows seen recently."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid:random
    role: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
    leading: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_pass_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_pass_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Peer(Base):
    """Another suanli platform (migration 0015). `direction` `lends`: it lends us compute — added
    with `suanli peer add`, it is the center `center_id` with the connector `suanli`, its pools
    discovered from it. `borrows`: it borrows ours — invited with `suanli peer invite`, it is
    the tenant `tenant_id` of kind `platform`. A removed peer keeps its row (`removed_at`) for
    the statements of the months it took part in."""

    __tablename__ = "peers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(500), default="")
    network_id: Mapped[str] = mapped_column(String(64), default="")
    center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"), nullable=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    report: Mapped[bool] = mapped_column(Boolean, default=False)
    margin_bp: Mapped[int] = mapped_column(Integer, default=0)  # on the peer's price, 1/100 %
    created_at: Mapped[datetime]
    discovered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    discovery_error: Mapped[str] = mapped_column(String(500), default="")
    removed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class PeerCharge(Base):
    """What a peer platform that lent us compute billed us for one run there (migration 0015):
    its job's usage as the peer metered it, copied when the run ended. Our payout to the peer
    for a month is the sum of these by the peer's month (its `ended_at`), so both sides' monthly
    statements list the same runs and amounts (`suanli peer reconcile`)."""

    __tablename__ = "peer_charges"
    __table_args__ = (Index("ix_peer_charges_center_month", "center_id", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)
    center_id: Mapped[int] = mapped_column(Integer)
    run_key: Mapped[str] = mapped_column(String(64))
    remote_job_id: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    month: Mapped[str] = mapped_column(String(7))
    unit_seconds: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class PeerReport(Base):
    """The last report of a member node (a peer platform that reports to us, its parent node):
    its capacity, utilisation and monthly usage totals — never its tenants (migration 0015)."""

    __tablename__ = "peer_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), unique=True)
    network_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime]


class SubmissionKey(Base):
    """A submission's `Idempotency-Key` (migration 0017): the job or array that one
    `POST /api/v1/jobs` with this key made for its tenant, and the request's SHA-256, so a retry
    of the same request gets that answer again, never a second job. Written in the transaction
    that queues the job."""

    __tablename__ = "submission_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key", name="uq_submission_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_sha256: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    array_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]
