"""Refused MAM messages (mam_client.models.OutboxMessage): the node's reason, since when, how many refusals in a
row and the next slow retry. A refused message blocks its channel until it is attached (docs/mam.md "Refusals").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refusal', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))
        # server default: rows that exist when the hub is upgraded have never been refused
        batch_op.add_column(sa.Column('refusals', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.drop_column('retry_at')
        batch_op.drop_column('refusals')
        batch_op.drop_column('refused_at')
        batch_op.drop_column('refusal')
