"""The fleet upload queue's cursors (hub.fleet.models.FleetUploadCursor): per stream, the newest hub id the fleet
acknowledged (docs/fleet.md "The hub side").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'fleet_upload_cursors',
        sa.Column('stream', sa.String(length=16), nullable=False),
        sa.Column('cursor', sa.BigInteger(), nullable=False),
        sa.Column('sent', sa.BigInteger(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('stream', name=op.f('pk_fleet_upload_cursors')),
    )


def downgrade() -> None:
    op.drop_table('fleet_upload_cursors')
