"""DAG jobs: stages with dependencies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("submitted_at", suanli.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", suanli.store.types.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_dags_tenant_id_id", "dags", ["tenant_id", "id"])
    op.create_index("ix_dags_state", "dags", ["state"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dag_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("dag_stage", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_jobs_dag_id_dags", "dags", ["dag_id"], ["id"])
        batch.create_index("ix_jobs_dag_id", ["dag_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_dag_id")
        batch.drop_constraint("fk_jobs_dag_id_dags", type_="foreignkey")
        batch.drop_column("dag_stage")
        batch.drop_column("dag_id")
    op.drop_index("ix_dags_state", table_name="dags")
    op.drop_index("ix_dags_tenant_id_id", table_name="dags")
    op.drop_table("dags")
