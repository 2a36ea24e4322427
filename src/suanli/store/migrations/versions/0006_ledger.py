"""the double-entry ledger

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(120), nullable=False, unique=True),
        sa.Column("created_at", suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("at", suanli.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("memo", sa.String(500), nullable=False),
        sa.Column("refs", sa.JSON(), nullable=False),
        sa.Column("reverses_id", sa.Integer(), sa.ForeignKey("ledger_transactions.id"), nullable=True),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("transaction_id", sa.Integer(), sa.ForeignKey("ledger_transactions.id"), nullable=False),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("ledger_accounts.id"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_ledger_postings_transaction_id", "ledger_postings", ["transaction_id"])
    op.create_index("ix_ledger_postings_account_id", "ledger_postings", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_postings_account_id", table_name="ledger_postings")
    op.drop_index("ix_ledger_postings_transaction_id", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
