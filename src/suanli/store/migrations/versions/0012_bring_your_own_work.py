"""Bring your own work: artifacts (content-addressed, per tenant), datasets and where they live,
array jobs, a job's task fields (env, setup, work folder, inputs, outputs, constraints,
environment), a run's packed outputs, pools' architecture/features/environments, and tenants'
storage quotas

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
UTC = suanli.store.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "job_arrays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("submitted_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_arrays_tenant_id", "job_arrays", ["tenant_id"])
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("media_type", sa.String(length=100), nullable=False,
                  server_default="application/octet-stream"),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("expires_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "sha256", name="uq_artifact_tenant_sha"),
    )
    op.create_index("ix_artifacts_tenant_id", "artifacts", ["tenant_id"])
    op.create_index("ix_artifacts_job_id", "artifacts", ["job_id"])
    op.create_index("ix_artifacts_expires_at", "artifacts", ["expires_at"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_dataset_tenant_name"),
    )
    op.create_index("ix_datasets_tenant_id", "datasets", ["tenant_id"])
    op.create_table(
        "dataset_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("center_id", sa.Integer(), sa.ForeignKey("centers.id"), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False, server_default=""),
        sa.Column("present_since", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "center_id", name="uq_dataset_location"),
    )
    op.create_index("ix_dataset_locations_dataset_id", "dataset_locations", ["dataset_id"])
    with op.batch_alter_table("jobs", naming_convention=NAMES) as b:
        b.add_column(sa.Column("env", sa.JSON(), nullable=False, server_default="{}"))
        b.add_column(sa.Column("setup", sa.Text(), nullable=True))
        b.add_column(sa.Column("workdir_sha256", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("inputs", sa.JSON(), nullable=False, server_default="[]"))
        b.add_column(sa.Column("outputs", sa.JSON(), nullable=False, server_default="[]"))
        b.add_column(sa.Column("constraints", sa.JSON(), nullable=False, server_default="{}"))
        b.add_column(sa.Column("environment", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("array_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("array_index", sa.Integer(), nullable=True))
        b.create_foreign_key("fk_jobs_array_id_job_arrays", "job_arrays", ["array_id"], ["id"])
        b.create_index("ix_jobs_array_id", ["array_id"])
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("outputs_sha256", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("outputs_size", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("pools") as b:
        b.add_column(sa.Column("arch", sa.String(length=16), nullable=False,
                               server_default="x86_64"))
        b.add_column(sa.Column("features", sa.JSON(), nullable=False, server_default="[]"))
        b.add_column(sa.Column("environments", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("tenants") as b:
        b.add_column(sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("storage_quota_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as b:
        b.drop_column("storage_quota_count")
        b.drop_column("storage_quota_bytes")
    with op.batch_alter_table("pools") as b:
        b.drop_column("environments")
        b.drop_column("features")
        b.drop_column("arch")
    with op.batch_alter_table("runs") as b:
        b.drop_column("outputs_size")
        b.drop_column("outputs_sha256")
    with op.batch_alter_table("jobs", naming_convention=NAMES) as b:
        b.drop_index("ix_jobs_array_id")
        b.drop_constraint("fk_jobs_array_id_job_arrays", type_="foreignkey")
        for col in ("array_index", "array_id", "environment", "constraints", "outputs", "inputs",
                    "workdir_sha256", "setup", "env"):
            b.drop_column(col)
    op.drop_index("ix_dataset_locations_dataset_id", table_name="dataset_locations")
    op.drop_table("dataset_locations")
    op.drop_index("ix_datasets_tenant_id", table_name="datasets")
    op.drop_table("datasets")
    op.drop_index("ix_artifacts_expires_at", table_name="artifacts")
    op.drop_index("ix_artifacts_job_id", table_name="artifacts")
    op.drop_index("ix_artifacts_tenant_id", table_name="artifacts")
    op.drop_table("artifacts")
    op.drop_index("ix_job_arrays_tenant_id", table_name="job_arrays")
    op.drop_table("job_arrays")
