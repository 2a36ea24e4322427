"""Federation (issue 18): a tenant's kind (`platform`: another suanli instance that borrows
compute here), a pool's own network identifier (a peer's pool keeps the peer's) and when it was
withdrawn (its peer stopped offering it: never a candidate again), and the peers table (the
platforms this one lends to and borrows from)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = suanli.store.types.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False,
                                   server_default="enterprise"))
        batch.add_column(sa.Column("peer_earlier_by_s", sa.Integer(), nullable=True))
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("identifier", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("withdrawn_at", UTC(timezone=True), nullable=True))
    op.create_table(
        "peers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("network_id", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("center_id", sa.Integer(), sa.ForeignKey("centers.id"), nullable=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("report", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("margin_bp", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("discovered_at", UTC(timezone=True), nullable=True),
        sa.Column("discovery_error", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("removed_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_peers_name", "peers", ["name"])
    op.create_table(
        "peer_charges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("center_id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("remote_job_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC(timezone=True), nullable=False),
        sa.Column("ended_at", UTC(timezone=True), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("unit_seconds", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_index("ix_peer_charges_center_month", "peer_charges", ["center_id", "month"])
    op.create_table(
        "peer_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("network_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id"),
    )


def downgrade() -> None:
    op.drop_table("peer_reports")
    op.drop_index("ix_peer_charges_center_month", table_name="peer_charges")
    op.drop_table("peer_charges")
    op.drop_index("ix_peers_name", table_name="peers")
    op.drop_table("peers")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("withdrawn_at")
        batch.drop_column("identifier")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("peer_earlier_by_s")
        batch.drop_column("kind")
