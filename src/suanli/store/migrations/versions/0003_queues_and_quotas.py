"""per-pool queues (a job's committed pool) and tenant quotas

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("target_pool_id", sa.Integer(), nullable=True))
    op.create_table(
        "tenant_quotas",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("device_kind", sa.String(8), nullable=False),
        sa.Column("max_units", sa.Integer(), nullable=False),
        sa.Column("updated_at", suanli.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "device_kind", name="uq_tenant_quota"),
    )
    op.create_index("ix_tenant_quotas_tenant_id", "tenant_quotas", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_tenant_quotas_tenant_id", table_name="tenant_quotas")
    op.drop_table("tenant_quotas")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("target_pool_id")
