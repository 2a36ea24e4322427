"""jobs(submitted_at, tenant_id): the dashboard's jobs per day and enterprises served read the
last 30 days of submissions from this index instead of scanning every job

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_submitted_at_tenant", "jobs", ["submitted_at", "tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_submitted_at_tenant", table_name="jobs")
