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

    center: Mapped[Center] = relationship(back_populates="pools")

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

    user: Mapped[User] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_state", "state"),
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


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # One record per run, enforced by the database: a run is metered exactly once.
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id"), index=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
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
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


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
