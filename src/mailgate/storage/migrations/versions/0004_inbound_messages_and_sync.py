"""Inbound messages, mailbox cursors and sync leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 18:06:26.477961
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_mailboxes",
        sa.Column("account_id", sa.String(length=26), nullable=False),
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_inbound_mailboxes_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "mailbox", name=op.f("pk_inbound_mailboxes")),
    )
    op.create_table(
        "inbound_sync_leases",
        sa.Column("account_id", sa.String(length=26), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_inbound_sync_leases_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_inbound_sync_leases")),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("account_id", sa.String(length=26), nullable=False),
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=500), nullable=True),
        sa.Column("sender", sa.String(length=400), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("is_bounce", sa.Boolean(), nullable=False),
        sa.Column("bounce", sa.JSON(), nullable=True),
        sa.Column("matched_message_id", sa.String(length=26), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_inbound_messages_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["matched_message_id"],
            ["messages.id"],
            name=op.f("fk_inbound_messages_matched_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_inbound_messages_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "mailbox",
            "uidvalidity",
            "uid",
            name="uq_inbound_messages_uid",
        ),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_messages_account", ["account_id", "id"], unique=False)
        batch_op.create_index(
            "ix_inbound_messages_message_id", ["account_id", "mailbox", "message_id"], unique=False
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_tenant_message_id", ["tenant_id", "message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_tenant_message_id")

    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_message_id")
        batch_op.drop_index("ix_inbound_messages_account")

    op.drop_table("inbound_messages")
    op.drop_table("inbound_sync_leases")
    op.drop_table("inbound_mailboxes")
