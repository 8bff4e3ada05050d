"""mam_message_bodies: a message's plaintext, payload and bundle trytes as rows written once (issue 16).

Why: a message row is updated at every step of the publisher (prepared, an attempt counted, a transient error,
attached), and a database rewrites a whole row when it changes, its large values too: each message's ~30,000
trytes of plaintext were written again at prepare, again with the payload when the attempt was counted, and again
with both and the ~45,000 trytes of the bundle at attach, then once more at the WAL checkpoint. As rows of their
own, each part is written when it exists and never again, and the updates touch a row of a few hundred bytes.

Each part is stored deflated (mam_client.stored_trytes: a readings message's plaintext about 6.7 times smaller,
a payload about 1.6 times, a bundle about 1.8). The parts are copied from the columns, deflated, then the columns
go. On SQLite, dropping columns rebuilds the table (Alembic's batch mode copies it): on a hub with months of
messages the upgrade takes a while, once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: part name -> the column of mam_messages it came from
PARTS = {'message': 'message', 'payload': 'payload', 'bundle': 'bundle_trytes'}
#: messages copied per statement
BATCH = 500


def pack(text: str) -> bytes:
    """mam_client.stored_trytes.pack as of this revision (a revision keeps its own copy: it must not change)."""
    return zlib.compress(text.encode('ascii'), 6)


def unpack(data: bytes) -> str:
    return zlib.decompress(bytes(data)).decode('ascii')


def upgrade() -> None:
    op.create_table(
        'mam_message_bodies',
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('part', sa.String(length=16), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['mam_messages.id']),
        sa.PrimaryKeyConstraint('message_id', 'part'),
    )
    conn = op.get_bind()
    for part, column in PARTS.items():
        after = 0
        while True:  # a batch at a time: a hub's months of messages do not fit in a Pi's memory at once
            rows = conn.execute(sa.text(f"SELECT id, {column} FROM mam_messages WHERE id > :after AND {column} IS NOT "
                                        f"NULL ORDER BY id LIMIT {BATCH}"), {"after": after}).all()
            if not rows:
                break
            conn.execute(sa.text("INSERT INTO mam_message_bodies (message_id, part, data) VALUES (:id, :part, :data)"),
                         [{"id": row_id, "part": part, "data": pack(text)} for row_id, text in rows])
            after = rows[-1][0]
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        for column in PARTS.values():
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        for column in PARTS.values():
            batch_op.add_column(sa.Column(column, sa.Text(), nullable=True))
    conn = op.get_bind()
    for part, column in PARTS.items():
        after = 0
        while True:
            rows = conn.execute(sa.text(f"SELECT message_id, data FROM mam_message_bodies WHERE part = '{part}' AND "
                                        f"message_id > :after ORDER BY message_id LIMIT {BATCH}"),
                                {"after": after}).all()
            if not rows:
                break
            conn.execute(sa.text(f"UPDATE mam_messages SET {column} = :text WHERE id = :id"),
                         [{"id": row_id, "text": unpack(data)} for row_id, data in rows])
            after = rows[-1][0]
    op.execute("UPDATE mam_messages SET message = '' WHERE message IS NULL")
    with op.batch_alter_table('mam_messages', schema=None) as batch_op:
        batch_op.alter_column('message', existing_type=sa.Text(), nullable=False)
    op.drop_table('mam_message_bodies')
