"""Foreign keys off the hot append-only tables

Billing writes a usage record, a transaction, 2-5 postings and often a redemption per run; each
foreign key is an index probe and a row lock per inserted row (40% of billing's time on
PostgreSQL). Kept: usage_records.run_id and voucher_redemptions.run_id/grant_id (the records'
real parents). Dropped: the copies of the run's and grant's tenant, center, pool, job and
programme on those tables, and ledger_postings' transaction and account (written only by
`services.ledger.post_many`, in the transaction's own database transaction; `suanli audit verify`
checks that every posting's transaction and account exist).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = {
    "usage_records": [("job_id", "jobs"), ("tenant_id", "tenants"), ("center_id", "centers"),
                      ("pool_id", "pools")],
    "voucher_redemptions": [("programme_id", "voucher_programmes"), ("tenant_id", "tenants"),
                            ("center_id", "centers")],
    "ledger_postings": [("transaction_id", "ledger_transactions"), ("account_id", "ledger_accounts")],
}
# SQLite's foreign keys have no names: batch mode names them by this convention to drop them.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table, fks in DROPPED.items():
            with op.batch_alter_table(table, naming_convention=NAMES, recreate="always") as b:
                for column, referred in fks:
                    b.drop_constraint(_name(table, column, referred), type_="foreignkey")
        return
    inspector = sa.inspect(bind)
    for table, fks in DROPPED.items():
        names = {tuple(fk["constrained_columns"]): fk["name"] for fk in inspector.get_foreign_keys(table)}
        for column, _referred in fks:
            op.drop_constraint(names[(column,)], table, type_="foreignkey")


def downgrade() -> None:
    for table, fks in DROPPED.items():
        with op.batch_alter_table(table, naming_convention=NAMES) as b:
            for column, referred in fks:
                b.create_foreign_key(_name(table, column, referred), referred, [column], ["id"])
