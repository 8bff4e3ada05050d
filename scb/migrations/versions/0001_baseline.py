"""Baseline: every table as of the first migration-managed release.

Publisher (mam_client.models): mam_channels, mam_messages. Energy manager (energy_manager.models):
energy_readings, energy_counters, energy_state.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('energy_counters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_energy_counters')),
    sa.UniqueConstraint('source', 'kind', name='uq_energy_counters_source_kind')
    )
    op.create_table('energy_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value_json', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_energy_state'))
    )
    op.create_table('mam_channels',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('security', sa.Integer(), nullable=False),
    sa.Column('first_root', sa.String(length=81), nullable=False),
    sa.Column('state_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_mam_channels'))
    )
    op.create_table('mam_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_index', sa.Integer(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('root', sa.String(length=81), nullable=True),
    sa.Column('address', sa.String(length=81), nullable=True),
    sa.Column('next_root', sa.String(length=81), nullable=True),
    sa.Column('prepared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('bundle_hash', sa.String(length=81), nullable=True),
    sa.Column('tx_hashes', sa.Text(), nullable=True),
    sa.Column('bundle_trytes', sa.Text(), nullable=True),
    sa.Column('attached_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mam_messages'))
    )
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mam_messages_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_mam_messages_channel'), ['channel'], unique=False)
        batch_op.create_index('ix_mam_messages_channel_state', ['channel', 'state', 'id'], unique=False)

    op.create_table('energy_readings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hub', sa.String(length=64), nullable=False),
    sa.Column('meter', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('party', sa.String(length=64), nullable=False),
    sa.Column('circuit', sa.String(length=16), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('register_wh', sa.BigInteger(), nullable=False),
    sa.Column('power_w', sa.BigInteger(), nullable=False),
    sa.Column('salt', sa.String(length=32), nullable=False),
    sa.Column('canonical', sa.LargeBinary(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('delta_wh', sa.BigInteger(), nullable=False),
    sa.Column('interval_ms', sa.BigInteger(), nullable=True),
    sa.Column('flags', sa.String(length=64), nullable=False),
    sa.Column('window_start_ms', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('period', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['mam_messages.id'], name=op.f('fk_energy_readings_message_id_mam_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_energy_readings')),
    sa.UniqueConstraint('digest', name=op.f('uq_energy_readings_digest')),
    sa.UniqueConstraint('hub', 'meter', 'seq', name='uq_energy_readings_hub_meter_seq')
    )
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.create_index('ix_energy_readings_batch', ['message_id', 'window_start_ms'], unique=False)
        batch_op.create_index('ix_energy_readings_meter_ts', ['meter', 'ts_ms'], unique=False)
        batch_op.create_index(batch_op.f('ix_energy_readings_party'), ['party'], unique=False)
        batch_op.create_index(batch_op.f('ix_energy_readings_period'), ['period'], unique=False)
        batch_op.create_index(batch_op.f('ix_energy_readings_ts_ms'), ['ts_ms'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('energy_readings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_energy_readings_ts_ms'))
        batch_op.drop_index(batch_op.f('ix_energy_readings_period'))
        batch_op.drop_index(batch_op.f('ix_energy_readings_party'))
        batch_op.drop_index('ix_energy_readings_meter_ts')
        batch_op.drop_index('ix_energy_readings_batch')

    op.drop_table('energy_readings')
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_mam_messages_channel_state')
        batch_op.drop_index(batch_op.f('ix_mam_messages_channel'))
        batch_op.drop_index(batch_op.f('ix_mam_messages_address'))

    op.drop_table('mam_messages')
    op.drop_table('mam_channels')
    op.drop_table('energy_state')
    op.drop_table('energy_counters')
