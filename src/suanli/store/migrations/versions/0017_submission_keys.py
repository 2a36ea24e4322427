"""Idempotency keys of job submissions: the job (or array) one `POST /api/v1/jobs` with an
`Idempotency-Key` made for its tenant, so a client that retries after a lost answer (a 503 while
the database restarted, a dropped connection) gets that job again instead of a second one.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = suanli.store.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "submission_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("array_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "key", name="uq_submission_key"),
    )


def downgrade() -> None:
    op.drop_table("submission_keys")
