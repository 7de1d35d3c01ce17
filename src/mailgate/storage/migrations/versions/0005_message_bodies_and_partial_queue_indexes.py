"""Message bodies in their own table; partial indexes for the queue

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 18:20:00.000000

The queue updates a message row at claim and at finish; with the composed bytes in the row,
every update rewrote them (a page per message on SQLite, a new tuple version on PostgreSQL).
The bytes move to ``message_bodies``. The due and lease indexes become partial, so finished
messages, nearly all rows, are no longer in them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_DUE = "next_attempt_at IS NOT NULL"
_SENDING = "status = 'sending'"


def upgrade() -> None:
    op.create_table(
        "message_bodies",
        sa.Column("message_id", sa.String(length=26), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_bodies_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_bodies")),
    )
    op.execute("INSERT INTO message_bodies (message_id, raw) SELECT id, raw FROM messages")
    op.drop_index("ix_messages_due", table_name="messages")
    op.drop_index("ix_messages_lease", table_name="messages")
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+). Batch mode would copy the table and
    # drop the old one, and with foreign keys on, SQLite's DROP TABLE deletes the rows of
    # every table that cascades from messages.
    op.drop_column("messages", "raw")
    op.create_index(
        "ix_messages_due",
        "messages",
        ["next_attempt_at"],
        sqlite_where=sa.text(_DUE),
        postgresql_where=sa.text(_DUE),
    )
    op.create_index(
        "ix_messages_lease",
        "messages",
        ["lease_expires_at"],
        sqlite_where=sa.text(_SENDING),
        postgresql_where=sa.text(_SENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_lease", table_name="messages")
    op.drop_index("ix_messages_due", table_name="messages")
    op.add_column("messages", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE messages SET raw = "
        "(SELECT raw FROM message_bodies b WHERE b.message_id = messages.id)"
    )
    op.create_index("ix_messages_due", "messages", ["next_attempt_at"])
    op.create_index("ix_messages_lease", "messages", ["status", "lease_expires_at"])
    op.drop_table("message_bodies")
