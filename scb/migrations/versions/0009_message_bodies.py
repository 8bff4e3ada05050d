"""mam_message_bodies: a message's plaintext, payload and bundle trytes as rows written once (issue 16).

Why: a message row is updated at every step of the publisher (prepared, an attempt counted, a transient error,
attached), and a database rewrites a whole row when it changes, its large values too: each message's ~30,000
trytes of plaintext were written again at prepare, again with the payload when the attempt was counted, and again
with both and the ~45,000 trytes of the bundle at attach, then once more at the WAL checkpoint. As rows of their
own, each part is written when it exists and never again, and the updates touch a row of a few hundred bytes.

The parts are copied from the columns, then the columns go. On SQLite, dropping columns rebuilds the table
(Alembic's batch mode copies it): on a hub with months of messages the upgrade takes a while, once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: part name -> the column of mam_messages it came from
PARTS = {'message': 'message', 'payload': 'payload', 'bundle': 'bundle_trytes'}


def upgrade() -> None:
    op.create_table(
        'mam_message_bodies',
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('part', sa.String(length=16), nullable=False),
        sa.Column('trytes', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['mam_messages.id']),
        sa.PrimaryKeyConstraint('message_id', 'part'),
    )
    for part, column in PARTS.items():
        op.execute(f"INSERT INTO mam_message_bodies (message_id, part, trytes) SELECT id, '{part}', {column} "
                   f"FROM mam_messages WHERE {column} IS NOT NULL ORDER BY id")
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        for column in PARTS.values():
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        for column in PARTS.values():
            batch_op.add_column(sa.Column(column, sa.Text(), nullable=True))
    for part, column in PARTS.items():
        op.execute(f"UPDATE mam_messages SET {column} = (SELECT b.trytes FROM mam_message_bodies b "
                   f"WHERE b.message_id = mam_messages.id AND b.part = '{part}')")
    op.execute("UPDATE mam_messages SET message = '' WHERE message IS NULL")
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.alter_column('message', existing_type=sa.Text(), nullable=False)
    op.drop_table('mam_message_bodies')
