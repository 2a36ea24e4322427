"""The control plane's processes: one row per API replica, all-in-one server or engine candidate
(`host:pid:random`), its role, version, start and last heartbeat, and for an engine whether it
led, its epoch and its last pass (what `suanli status` shows)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = suanli.store.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("started_at", UTC(timezone=True), nullable=False),
        sa.Column("seen_at", UTC(timezone=True), nullable=False),
        sa.Column("leading", sa.Boolean(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("last_pass_at", UTC(timezone=True), nullable=True),
        sa.Column("last_pass_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_replicas_seen_at", "replicas", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_replicas_seen_at", table_name="replicas")
    op.drop_table("replicas")
