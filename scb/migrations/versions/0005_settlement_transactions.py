"""Settlement on a public chain (issue 12): every settle transaction signed for a period (replacements and
re-signings included: settlement.models.SettlementTransaction), and the hash of the block holding a period's
settlement, to see a reorganisation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('settlement_transactions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('period_ref', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('raw_tx', sa.Text(), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('gas', sa.BigInteger(), nullable=False),
    sa.Column('max_fee_wei', sa.String(length=80), nullable=False),
    sa.Column('tip_wei', sa.String(length=80), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['period_ref'], ['settlement_periods.id'],
                            name=op.f('fk_settlement_transactions_period_ref_settlement_periods')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_transactions')),
    sa.UniqueConstraint('tx_hash', name=op.f('uq_settlement_transactions_tx_hash'))
    )
    with op.batch_alter_table('settlement_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_settlement_transactions_period', ['period_ref', 'id'], unique=False)
    with op.batch_alter_table('settlement_periods', schema=None) as batch_op:
        batch_op.add_column(sa.Column('block_hash', sa.String(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('settlement_periods', schema=None) as batch_op:
        batch_op.drop_column('block_hash')
    with op.batch_alter_table('settlement_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_transactions_period')
    op.drop_table('settlement_transactions')
