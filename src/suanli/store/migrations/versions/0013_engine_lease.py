"""The engine's lease: one row naming the engine candidate that leads (holder `host:pid:random`),
its epoch (one more at every acquisition) and when it was taken, renewed and expires; and the
epoch that placed each run (what a fenced leader wrote)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = suanli.store.types.UTCDateTime


def upgrade() -> None:
    lease = op.create_table(
        "engine_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("acquired_at", UTC(timezone=True), nullable=True),
        sa.Column("renewed_at", UTC(timezone=True), nullable=True),
        sa.Column("expires_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # The single row, free: candidates lock and update it, never insert (no race on creation).
    op.bulk_insert(lease, [{"id": 1, "holder": None, "epoch": 0}])
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("epoch", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.drop_column("epoch")
    op.drop_table("engine_lease")
