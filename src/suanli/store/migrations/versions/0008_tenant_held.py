"""tenants.held_fen: the running sum of the tenant's unfinished jobs' holds

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_fen", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE tenants SET held_fen = (SELECT COALESCE(SUM(hold_fen), 0) FROM jobs "
               "WHERE jobs.tenant_id = tenants.id AND jobs.state IN ('QUEUED', 'PLACED', 'RUNNING'))")
    op.execute("UPDATE jobs SET hold_fen = 0 WHERE state NOT IN ('QUEUED', 'PLACED', 'RUNNING')")


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("held_fen")
