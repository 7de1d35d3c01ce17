"""Index ingested inbound messages by when they were stored, for the retention purge

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:00:00.000000

Housekeeping deletes ingested messages older than the retention every few minutes; without
this index each pass would read the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbound_messages_created", "inbound_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_created", table_name="inbound_messages")
