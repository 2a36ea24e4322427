"""money: prices, credit, vouchers, statements, audit log

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suanli.store.types

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('entries', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('statements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('party', sa.String(length=8), nullable=False),
    sa.Column('party_id', sa.Integer(), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('unit_seconds', sa.BigInteger(), nullable=False),
    sa.Column('pflops_hours', sa.Float(), nullable=False),
    sa.Column('gross_fen', sa.BigInteger(), nullable=False),
    sa.Column('voucher_fen', sa.BigInteger(), nullable=False),
    sa.Column('adjustments_fen', sa.BigInteger(), nullable=False),
    sa.Column('net_fen', sa.BigInteger(), nullable=False),
    sa.Column('ledger_tx_id', sa.Integer(), nullable=True),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('month', 'party', 'party_id', name='uq_statement')
    )
    op.create_table('voucher_programmes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('budget_fen', sa.BigInteger(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('starts_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rules_version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('related_parties',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('center_id', sa.Integer(), nullable=False),
    sa.Column('relation', sa.String(length=200), nullable=False),
    sa.Column('declared_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('declared_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['center_id'], ['centers.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'center_id', name='uq_related_party')
    )
    with op.batch_alter_table('related_parties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_related_parties_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('voucher_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['programme_id'], ['voucher_programmes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('programme_id', 'version', name='uq_voucher_rules_version')
    )
    with op.batch_alter_table('voucher_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_rules_programme_id'), ['programme_id'], unique=False)

    op.create_table('price_lists',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('price_fen_per_unit_hour', sa.BigInteger(), nullable=False),
    sa.Column('valid_from', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['pools.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pool_id', 'valid_from', name='uq_price_version')
    )
    with op.batch_alter_table('price_lists', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_price_lists_pool_id'), ['pool_id'], unique=False)

    op.create_table('voucher_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('requested_fen', sa.BigInteger(), nullable=False),
    sa.Column('planned_spend_fen', sa.BigInteger(), nullable=False),
    sa.Column('planned_use', sa.String(length=2000), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('approved_fen', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', suanli.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['programme_id'], ['voucher_programmes.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('voucher_applications', schema=None) as batch_op:
        batch_op.create_index('ix_voucher_applications_programme_state', ['programme_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_applications_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('voucher_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('granted_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('expired_at', suanli.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['voucher_applications.id'], ),
    sa.ForeignKeyConstraint(['programme_id'], ['voucher_programmes.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('application_id')
    )
    with op.batch_alter_table('voucher_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_grants_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_grants_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('voucher_claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grant_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('fees_fen', sa.BigInteger(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('ledger_tx_id', sa.Integer(), nullable=True),
    sa.Column('created_at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['grant_id'], ['voucher_grants.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('grant_id', 'period', name='uq_voucher_claim_period')
    )
    with op.batch_alter_table('voucher_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_claims_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('voucher_redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('grant_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('center_id', sa.Integer(), nullable=False),
    sa.Column('claim_id', sa.Integer(), nullable=True),
    sa.Column('bill_fen', sa.BigInteger(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('ratio_bp', sa.Integer(), nullable=False),
    sa.Column('rules_version', sa.Integer(), nullable=False),
    sa.Column('at', suanli.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('clawed_back_at', suanli.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('clawback_reason', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['center_id'], ['centers.id'], ),
    sa.ForeignKeyConstraint(['claim_id'], ['voucher_claims.id'], ),
    sa.ForeignKeyConstraint(['grant_id'], ['voucher_grants.id'], ),
    sa.ForeignKeyConstraint(['programme_id'], ['voucher_programmes.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id')
    )
    with op.batch_alter_table('voucher_redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_redemptions_grant_id'), ['grant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_redemptions_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_redemptions_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_fen', sa.BigInteger(), nullable=False, server_default='0'))

    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('balance_fen', sa.BigInteger(), nullable=False, server_default='0'))

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credit_limit_fen', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('frozen_at', suanli.store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('frozen_reason', sa.String(length=500), nullable=False, server_default=''))

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index('ix_usage_ended_at', ['ended_at'], unique=False)

    # Data: cached balances = the postings' sums; every pool's current price as its first price
    # list (valid since the pool was created); the audit log's head.
    op.execute("UPDATE ledger_accounts SET balance_fen = (SELECT COALESCE(SUM(amount_fen), 0) "
               "FROM ledger_postings WHERE ledger_postings.account_id = ledger_accounts.id)")
    op.execute("INSERT INTO price_lists (pool_id, price_fen_per_unit_hour, valid_from, note, "
               "created_at) SELECT id, price_fen_per_unit_hour, created_at, 'initial', created_at "
               "FROM pools")
    op.execute("INSERT INTO audit_head (id, last_id, last_hash, entries) VALUES "
               "(1, 0, '" + "0" * 64 + "', 0)")


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_ended_at')

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('frozen_reason')
        batch_op.drop_column('frozen_at')
        batch_op.drop_column('credit_limit_fen')

    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_column('balance_fen')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('hold_fen')

    with op.batch_alter_table('voucher_redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_redemptions_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_voucher_redemptions_programme_id'))
        batch_op.drop_index(batch_op.f('ix_voucher_redemptions_grant_id'))

    op.drop_table('voucher_redemptions')
    with op.batch_alter_table('voucher_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_claims_tenant_id'))

    op.drop_table('voucher_claims')
    with op.batch_alter_table('voucher_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_grants_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_voucher_grants_programme_id'))

    op.drop_table('voucher_grants')
    with op.batch_alter_table('voucher_applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_applications_tenant_id'))
        batch_op.drop_index('ix_voucher_applications_programme_state')

    op.drop_table('voucher_applications')
    with op.batch_alter_table('price_lists', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_price_lists_pool_id'))

    op.drop_table('price_lists')
    with op.batch_alter_table('voucher_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_rules_programme_id'))

    op.drop_table('voucher_rules')
    with op.batch_alter_table('related_parties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_related_parties_tenant_id'))

    op.drop_table('related_parties')
    op.drop_table('voucher_programmes')
    op.drop_table('statements')
    op.drop_table('audit_log')
    op.drop_table('audit_head')
