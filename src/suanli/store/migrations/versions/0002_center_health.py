"""center health and stale runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("centers") as batch:
        batch.add_column(sa.Column("status_source", sa.String(16), nullable=False,
                                   server_default="operator"))
        batch.add_column(sa.Column("health_failures", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("health_detail", sa.String(500), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("health_checked_at",
                                   suanli.store.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("health_ok_at",
                                   suanli.store.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("offline_since",
                                   suanli.store.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("stale", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("stale")
    with op.batch_alter_table("centers") as batch:
        for name in ("offline_since", "health_ok_at", "health_checked_at", "health_detail",
                     "health_failures", "status_source"):
            batch.drop_column(name)
