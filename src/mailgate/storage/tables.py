"""Table definitions (SQLAlchemy Core) for configuration: tenants, members, servers, accounts.

Secret columns (``*_secrets``) hold secret-box ciphertext bound to their row; nothing else
stores a secret. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from mailgate.storage.table_base import ID, _id, _stamps, _tenant, metadata

tenants = Table(
    "tenants",
    metadata,
    _id(),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    *_stamps(),
)

users = Table(
    "users",
    metadata,
    _id(),
    _tenant(),
    Column("email", String(320), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "email"),
)

apps = Table(
    "apps",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(100), nullable=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "name"),
)

#: An app's email test list on one stage (by name; "" for mail that names no stage).
test_lists = Table(
    "test_lists",
    metadata,
    Column("app_id", String(ID), ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    Column("stage", String(64), primary_key=True),
    _tenant(),
    Column("addresses", JSON, nullable=False),
    # User ids; each stands for the user's address when a message is sent.
    Column("users", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_test_lists_tenant", "tenant_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _id(),
    # NULL tenant: an instance-admin token.
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("app_id", String(ID), ForeignKey("apps.id", ondelete="CASCADE"), nullable=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

mail_servers = Table(
    "mail_servers",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(200), nullable=False),
    Column("engine", String(20), nullable=False),
    Column("provider", String(64), nullable=True),
    Column("host", String(255), nullable=True),
    Column("port", Integer, nullable=False),
    Column("security", String(10), nullable=False),
    Column("min_tls_version", String(4), nullable=False),
    Column("verify_certificate", Boolean, nullable=False),
    Column("ca_certificates", Text, nullable=True),
    # The name of a "ca" keystore of the tenant (instead of ca_certificates).
    Column("ca_keystore", String(200), nullable=True),
    Column("auth", String(10), nullable=False),
    Column("username", String(320), nullable=True),
    Column("allow_insecure_auth", Boolean, nullable=False),
    Column("oauth", JSON, nullable=True),
    Column("api_base_url", String(500), nullable=True),
    Column("sender_upn", String(320), nullable=True),
    Column("timeout_seconds", Float, nullable=False),
    Column("max_connections", Integer, nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=True),
    Column("is_default", Boolean, nullable=False),
    Column(
        "fallback_server_id",
        String(ID),
        ForeignKey("mail_servers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("options", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("status_detail", Text, nullable=True),
    Column("secrets", LargeBinary, nullable=True),
    Column("version", Integer, nullable=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "name"),
)

stages = Table(
    "stages",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(64), nullable=False),
    # At most one mail server per stage, by construction.
    Column(
        "mail_server_id",
        String(ID),
        ForeignKey("mail_servers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

email_accounts = Table(
    "email_accounts",
    metadata,
    _id(),
    _tenant(),
    Column("address", String(320), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("description", String(200), nullable=False, server_default=""),
    Column("reply_to", String(320), nullable=True),
    Column(
        "mail_server_id",
        String(ID),
        ForeignKey("mail_servers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("is_default", Boolean, nullable=False),
    Column("imap", JSON, nullable=True),
    Column("smime", JSON, nullable=True),
    Column("secrets", LargeBinary, nullable=True),
    Column("last_sync_at", DateTime(timezone=True), nullable=True),
    Column("last_sync_error", Text, nullable=True),
    Column("version", Integer, nullable=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "address"),
)

audit_log = Table(
    "audit_log",
    metadata,
    _id(),
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(64), nullable=False),
    Column("object_id", String(ID), nullable=True),
    Column("object_name", String(320), nullable=True),
    Column("changes", JSON, nullable=False),
    Index("ix_audit_tenant_at", "tenant_id", "at"),
)

# Messages, the durable queue and the delivery log ----------------------------------------

messages = Table(
    "messages",
    metadata,
    _id(),
    _tenant(),
    Column("app_id", String(ID), ForeignKey("apps.id", ondelete="SET NULL"), nullable=True),
    Column("stage", String(64), nullable=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column(
        "server_id", String(ID), ForeignKey("mail_servers.id", ondelete="SET NULL"), nullable=True
    ),
    Column("status", String(12), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("mail_from", String(320), nullable=False),
    Column("from_header", String(400), nullable=False),
    Column("subject", String(1000), nullable=False),
    Column("redirected", Boolean, nullable=False),
    Column("original_recipients", JSON, nullable=True),
    Column("smtputf8", Boolean, nullable=False),
    Column("size", Integer, nullable=False),
    Column("meta", JSON, nullable=True),
    Column("send_at", DateTime(timezone=True), nullable=True),
    # Due time for the next attempt; NULL while sending, final or held.
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    # The next attempt may repeat a delivery whose outcome is unknown.
    Column("possible_duplicate", Boolean, nullable=False),
    # Held while the server's credentials are refused (auth_failed), until it is fixed.
    Column("held", Boolean, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("remote_id", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # Partial indexes: only due and sending rows are indexed, so the rows of finished mail
    # (nearly all of them) cost nothing on the queue's hot path.
    Index(
        "ix_messages_due",
        "next_attempt_at",
        sqlite_where=text("next_attempt_at IS NOT NULL"),
        postgresql_where=text("next_attempt_at IS NOT NULL"),
    ),
    Index(
        "ix_messages_lease",
        "lease_expires_at",
        sqlite_where=text("status = 'sending'"),
        postgresql_where=text("status = 'sending'"),
    ),
    Index("ix_messages_tenant_created", "tenant_id", "id"),
    Index("ix_messages_server_held", "server_id", "held"),
)

# The composed bytes live apart from the message row: the queue updates a message row two
# or three times per attempt, and a row that carried the body would be rewritten each time.
message_bodies = Table(
    "message_bodies",
    metadata,
    Column(
        "message_id",
        String(ID),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("raw", LargeBinary, nullable=False),
)

message_recipients = Table(
    "message_recipients",
    metadata,
    Column(
        "message_id",
        String(ID),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("status", String(12), nullable=False),
    Column("code", Integer, nullable=True),
    Column("reply", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),
    Index("ix_recipients_email", "email"),
)

attempts = Table(
    "attempts",
    metadata,
    _id(),
    Column("message_id", String(ID), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("n", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("server_id", String(ID), nullable=True),
    Column("engine", String(20), nullable=False),
    Column("worker", String(100), nullable=True),
    Column("outcome", String(12), nullable=False),
    Column("code", Integer, nullable=True),
    Column("reply", Text, nullable=True),
    Column("tls_version", String(20), nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("possible_duplicate", Boolean, nullable=False),
    Column("transcript", Text, nullable=True),
    Index("ix_attempts_message", "message_id", "n"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: Per-server send counters, one row a minute, shared by every worker (rate limits).
server_rate = Table(
    "server_rate",
    metadata,
    Column(
        "server_id", String(ID), ForeignKey("mail_servers.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("window_start", Integer, primary_key=True),
    Column("used", Integer, nullable=False),
)

#: One row per running process with delivery workers, written every few seconds, so that
#: ``/readyz`` and ``/metrics`` of any process see the workers of every process and host.
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("loops", Integer, nullable=False),
    Column("claiming", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# Signing, templates and webhooks ----------------------------------------------------------

dkim_keys = Table(
    "dkim_keys",
    metadata,
    _id(),
    _tenant(),
    Column("domain", String(255), nullable=False),
    Column("selector", String(63), nullable=False),
    Column("algorithm", String(10), nullable=False),
    Column("bits", Integer, nullable=True),
    Column("public_key", Text, nullable=False),
    # The private key (PEM), sealed; context "dkim_keys:<id>:secrets".
    Column("secrets", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "domain", "selector"),
)

keystores = Table(
    "keystores",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(200), nullable=False),
    Column("kind", String(10), nullable=False),  # pkcs12 | ca
    Column("aliases", JSON, nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=True),
    # Content (base64) and password, sealed; context "keystores:<id>:secrets".
    Column("secrets", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

templates = Table(
    "templates",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(100), nullable=False),
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=True),
    Column("html", Text, nullable=True),
    Column("version", Integer, nullable=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "name"),
)

webhooks = Table(
    "webhooks",
    metadata,
    _id(),
    _tenant(),
    Column("url", String(2000), nullable=False),
    Column("events", JSON, nullable=False),
    Column("status", String(12), nullable=False),  # active | disabled
    Column("disabled_reason", Text, nullable=True),
    Column("failing_since", DateTime(timezone=True), nullable=True),
    # The signing secret, sealed; context "webhooks:<id>:secrets". Fields: "secret", and
    # "previous" after a rotation with an overlap.
    Column("secrets", LargeBinary, nullable=False),
    # Until when deliveries also carry the previous secret's signature (a rotation's overlap).
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    *_stamps(),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id(),
    Column("webhook_id", String(ID), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_due", "next_attempt_at"),
    Index("ix_webhook_deliveries_hook", "webhook_id", "id"),
)

# Inbound (IMAP) ---------------------------------------------------------------------------

#: Finding the sent message a bounce returns: Message-IDs are looked up within a tenant.
Index("ix_messages_tenant_message_id", messages.c.tenant_id, messages.c.message_id)

#: Messages ingested from an account's IMAP inbox, once each: a UID identifies a message only
#: together with its mailbox and UIDVALIDITY (RFC 9051 section 2.3.1.1).
inbound_messages = Table(
    "inbound_messages",
    metadata,
    _id(),
    _tenant(),
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("mailbox", String(255), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("message_id", String(500), nullable=True),
    Column("sender", String(400), nullable=False),
    Column("subject", String(1000), nullable=False),
    Column("date", DateTime(timezone=True), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("size", Integer, nullable=False),
    # The message as fetched; only its header when it exceeded the size limit (truncated).
    Column("raw", LargeBinary, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("is_bounce", Boolean, nullable=False),
    # {format, original_message_id, reporting_mta, recipients: [{email, action, status,
    # code, diagnostic, applied}]}
    Column("bounce", JSON, nullable=True),
    # {feedback_type, original_message_id, recipients, user_agent, reporting_mta,
    # applied} for an ARF feedback report (RFC 5965)
    Column("complaint", JSON, nullable=True),
    Column(
        "matched_message_id",
        String(ID),
        ForeignKey("messages.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "tenant_id", "account_id", "mailbox", "uidvalidity", "uid", name="uq_inbound_messages_uid"
    ),
    Index("ix_inbound_messages_account", "account_id", "id"),
    Index("ix_inbound_messages_message_id", "account_id", "mailbox", "message_id"),
    # The retention purge deletes by age.
    Index("ix_inbound_messages_created", "created_at"),
)

#: How far each mailbox of an account has been read.
inbound_mailboxes = Table(
    "inbound_mailboxes",
    metadata,
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("mailbox", String(255), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: One sync per account at a time, across every process sharing the database: a lease.
inbound_sync_leases = Table(
    "inbound_sync_leases",
    metadata,
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("owner", String(100), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
)

#: Every column that holds secret-box ciphertext, for key rotation. The sealing context of
#: a value is always "<table>:<row id>:<column>".
SECRET_COLUMNS: tuple[tuple[Table, str], ...] = (
    (mail_servers, "secrets"),
    (email_accounts, "secrets"),
    (dkim_keys, "secrets"),
    (keystores, "secrets"),
    (webhooks, "secrets"),
)

# Tables of sessions, tenant policies and suppressions live in their own module, which adds
# them to the same ``metadata``; imported here so that this module names every table.
from mailgate.storage.tables_tenant import (  # noqa: E402 - after the tables they refer to
    app_quotas,
    event_webhook_keys,
    provider_events,
    quota_usage,
    suppressions,
    tenant_policies,
    ui_sessions,
)

__all__ = [
    "ID",
    "app_quotas",
    "event_webhook_keys",
    "metadata",
    "provider_events",
    "quota_usage",
    "suppressions",
    "tenant_policies",
    "ui_sessions",
]
