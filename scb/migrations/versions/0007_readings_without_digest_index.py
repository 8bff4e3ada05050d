"""energy_readings without the UNIQUE index of digests (issue 16: bytes written per reading).

Why: a digest is a random key, so each sample's readings land all over that index: at 1,000 meters every sample
rewrote about a 4 KB page of it per reading (in the WAL, then again at the checkpoint), 6.7 KB per reading
measured by benchmarks/sample_writes.py, more than the readings themselves. What it guarded is guarded by
uq_energy_readings_hub_meter_seq (the canonical bytes, hence the digest, contain hub, meter and seq, so two rows
with one digest would have one key), and `scb verify` finds a message's readings by that key and then compares
their digests (hub.verify_records.readings_lookup).

On SQLite, dropping a table constraint rebuilds the table (Alembic's batch mode copies it): on a hub with
millions of readings the upgrade takes a while, once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 20:10:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_energy_readings_digest', type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_energy_readings_digest', ['digest'])
