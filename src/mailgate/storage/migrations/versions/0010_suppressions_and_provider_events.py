"""Suppression lists, provider event-webhook keys, applied provider events, complaints

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:30:00.000000

``suppressions`` holds the addresses a tenant (scope ``*``) or one app must not send to;
``event_webhook_keys`` the public key that verifies a mail server's signed provider events
(SendGrid Event Webhook); ``provider_events`` the provider event ids already applied, so a
retried post changes nothing; ``inbound_messages.complaint`` what an ARF report said.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("scope", sa.String(length=26), nullable=False),
        sa.Column("app_id", sa.String(length=26), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_message_id", sa.String(length=26), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        _tenant_fk("suppressions"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_suppressions_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["source_message_id"],
            ["messages.id"],
            name=op.f("fk_suppressions_source_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("tenant_id", "scope", "email", name="uq_suppressions_address"),
    )
    op.create_index("ix_suppressions_tenant_email", "suppressions", ["tenant_id", "email"])
    op.create_table(
        "event_webhook_keys",
        sa.Column("server_id", sa.String(length=26), nullable=False),
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["mail_servers.id"],
            name=op.f("fk_event_webhook_keys_server_id_mail_servers"),
            ondelete="CASCADE",
        ),
        _tenant_fk("event_webhook_keys"),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_event_webhook_keys")),
    )
    op.create_table(
        "provider_events",
        sa.Column("server_id", sa.String(length=26), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["mail_servers.id"],
            name=op.f("fk_provider_events_server_id_mail_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "event_id", name=op.f("pk_provider_events")),
    )
    op.create_index("ix_provider_events_received", "provider_events", ["received_at"])
    op.add_column("inbound_messages", sa.Column("complaint", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("inbound_messages", "complaint")
    op.drop_index("ix_provider_events_received", table_name="provider_events")
    op.drop_table("provider_events")
    op.drop_table("event_webhook_keys")
    op.drop_index("ix_suppressions_tenant_email", table_name="suppressions")
    op.drop_table("suppressions")
