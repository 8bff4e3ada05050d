"""energy_readings without the (meter, ts_ms) index (issue 16: bytes written per reading).

Why: each sample inserts one reading per meter, so an index that leads with the meter takes each sample's entries
at as many places as there are meters: with 1,000 meters every sample's transaction rewrote about one 4 KB page
of it per reading (in the WAL, then again at the checkpoint), about 3 KB per reading measured. What it served is
served by uq_energy_readings_hub_meter_seq (a meter's readings in seq order, which is their time order), and
time ranges by ix_energy_readings_ts_ms.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:15:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.drop_index('ix_energy_readings_meter_ts')


def downgrade() -> None:
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.create_index('ix_energy_readings_meter_ts', ['meter', 'ts_ms'], unique=False)
