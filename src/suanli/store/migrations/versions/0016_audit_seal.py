"""The audit log's seal (issue 20): each entry's HMAC under the platform's audit key, and the
head's, so a log rewritten together with its head is told from one suanli wrote. The key is not in
the database (SUANLI_AUDIT_KEY or $SUANLI_HOME/audit.key); entries written before this revision
keep a NULL mac and are covered by the hash chain up to the first sealed entry.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("seal", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("seal")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("mac")
