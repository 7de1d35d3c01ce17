"""Tables of web UI sessions, tenant policies (quotas, retention) and suppressions.

Defined on :data:`mailgate.storage.tables.metadata` like every other table, and re-exported
by :mod:`mailgate.storage.tables`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from mailgate.storage.table_base import ID, _id, _stamps, _tenant, metadata

#: Signed-in web UI sessions: the cookie carries a random session id, this table its SHA-256.
#: Signing out deletes the row, which ends the session even for a copied cookie.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

#: A tenant's sending quota and retention (no row: no quota, the instance retention).
tenant_policies = Table(
    "tenant_policies",
    metadata,
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("quota_per_minute", Integer, nullable=True),
    Column("quota_per_day", Integer, nullable=True),
    # {"sent": days, "failed": days, ...}; a status left out follows the instance setting.
    Column("retention_days", JSON, nullable=False, default=dict),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: An app's own sending quota, within its tenant's.
app_quotas = Table(
    "app_quotas",
    metadata,
    Column("app_id", String(ID), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    _tenant(),
    Column("quota_per_minute", Integer, nullable=True),
    Column("quota_per_day", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Messages accepted per quota scope and window, shared by every process (fixed windows).
quota_usage = Table(
    "quota_usage",
    metadata,
    Column("scope", String(80), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("used", Integer, nullable=False),
)

# Suppressions and provider events ------------------------------------------------------------

#: Addresses a tenant (``scope`` "*") or one app (``scope`` = the app id) must not send to.
suppressions = Table(
    "suppressions",
    metadata,
    _id(),
    _tenant(),
    Column("scope", String(ID), nullable=False),
    Column("app_id", String(ID), ForeignKey("apps.id", ondelete="CASCADE"), nullable=True),
    Column("email", String(320), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column(
        "source_message_id",
        String(ID),
        ForeignKey("messages.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("note", String(500), nullable=True),
    Column("created_by", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant_id", "scope", "email", name="uq_suppressions_address"),
    Index("ix_suppressions_tenant_email", "tenant_id", "email"),
)

#: The key that verifies a provider's signed event posts to one mail server.
event_webhook_keys = Table(
    "event_webhook_keys",
    metadata,
    Column(
        "server_id",
        String(ID),
        ForeignKey("mail_servers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _tenant(),
    Column("provider", String(20), nullable=False),
    Column("public_key", Text, nullable=False),
    *_stamps(),
)

#: Provider events already applied (SendGrid retries a post; ``sg_event_id`` is unique).
provider_events = Table(
    "provider_events",
    metadata,
    Column(
        "server_id",
        String(ID),
        ForeignKey("mail_servers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("event_id", String(100), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_provider_events_received", "received_at"),
)
