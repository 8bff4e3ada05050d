"""energy_meter_heads, and energy_readings without its per-meter and per-household indexes (issue 16).

Why: each sample inserts one reading per meter, so an index whose key leads with the meter or the household takes
a sample's entries at as many places as there are meters: at 1,000 meters the UNIQUE (hub, meter, seq) index and
the party index rewrote about a 4 KB page each per reading (in the WAL, then again at the checkpoint), 3.8 KB
per reading measured by benchmarks/sample_writes.py, eight times the readings themselves.

What they served:
- (hub, meter, seq) unique, and each meter's newest reading at start: `energy_meter_heads`, one row per meter,
  which the monitor moves from seq - 1 to seq in the transaction that stores the reading (a head elsewhere
  fails that transaction), filled here with each meter's newest reading;
- `scb verify`'s lookup of a message's readings: by time (ix_energy_readings_ts_ms), then hub, meter and seq;
- a household's bills: ix_energy_readings_party_period, partial (settled readings only), which settlement fills
  a period at a time, one place per household.

On SQLite, dropping a table constraint rebuilds the table (Alembic's batch mode copies it): on a hub with
millions of readings the upgrade takes a while, once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTLED_ONLY = sa.text('period IS NOT NULL')


def upgrade() -> None:
    op.create_table(
        'energy_meter_heads',
        sa.Column('hub', sa.String(length=64), nullable=False),
        sa.Column('meter', sa.String(length=64), nullable=False),
        sa.Column('party', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('register_wh', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('hub', 'meter'),
    )
    # each meter's newest reading, found through the unique index before it goes
    op.execute(
        'INSERT INTO energy_meter_heads (hub, meter, party, seq, ts_ms, register_wh) '
        'SELECT r.hub, r.meter, r.party, r.seq, r.ts_ms, r.register_wh FROM energy_readings r '
        'JOIN (SELECT hub, meter, max(seq) AS seq FROM energy_readings GROUP BY hub, meter) newest '
        'ON r.hub = newest.hub AND r.meter = newest.meter AND r.seq = newest.seq')
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_energy_readings_hub_meter_seq', type_='unique')
        batch_op.drop_index('ix_energy_readings_party')
    op.create_index('ix_energy_readings_party_period', 'energy_readings', ['party', 'period'], unique=False,
                    sqlite_where=SETTLED_ONLY, postgresql_where=SETTLED_ONLY)


def downgrade() -> None:
    op.drop_index('ix_energy_readings_party_period', table_name='energy_readings',
                  sqlite_where=SETTLED_ONLY, postgresql_where=SETTLED_ONLY)
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.create_index('ix_energy_readings_party', ['party'], unique=False)
        batch_op.create_unique_constraint('uq_energy_readings_hub_meter_seq', ['hub', 'meter', 'seq'])
    op.drop_table('energy_meter_heads')
