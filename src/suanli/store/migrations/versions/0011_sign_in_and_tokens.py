"""Sign-in and tokens: failed sign-ins kept for the throttle (per user and per address, so it
holds across restarts and API replicas); a token's expiry and the token that created it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys have no names: batch mode names them by this convention.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("at", suanli.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sign_in_failures_key_at", "sign_in_failures", ["key", "at"])
    with op.batch_alter_table("api_tokens", naming_convention=NAMES) as b:
        b.add_column(sa.Column("expires_at", suanli.store.types.UTCDateTime(timezone=True),
                               nullable=True))
        b.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        b.create_foreign_key("fk_api_tokens_parent_id_api_tokens", "api_tokens",
                             ["parent_id"], ["id"])
        b.create_index("ix_api_tokens_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", naming_convention=NAMES) as b:
        b.drop_index("ix_api_tokens_parent_id")
        b.drop_constraint("fk_api_tokens_parent_id_api_tokens", type_="foreignkey")
        b.drop_column("parent_id")
        b.drop_column("expires_at")
    op.drop_index("ix_sign_in_failures_key_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
