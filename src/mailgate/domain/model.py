"""The configuration model: tenants, stages, mail servers, accounts, apps, members.

These are plain values; storage maps rows to them and services apply the rules.
Secret values are never held here: only whether each one is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailgate.domain.roles import Role
from mailgate.domain.servers import AuthKind, Engine, Security, ServerStatus, TlsVersion

SEEDED_STAGES: tuple[str, ...] = ("development", "test", "production")


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    slug: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Stage:
    id: str
    tenant_id: str
    name: str
    mail_server_id: str | None


@dataclass(frozen=True, slots=True)
class MailServer:
    """A mail server (the seeds' "email configuration") without its secrets."""

    id: str
    tenant_id: str
    name: str
    engine: Engine
    provider: str | None
    host: str | None
    port: int
    security: Security
    min_tls_version: TlsVersion
    verify_certificate: bool
    ca_certificates: str | None
    auth: AuthKind
    username: str | None
    allow_insecure_auth: bool
    oauth: dict[str, str] | None
    api_base_url: str | None
    sender_upn: str | None
    timeout_seconds: float
    max_connections: int
    rate_limit_per_minute: int | None
    is_default: bool
    fallback_server_id: str | None
    options: dict[str, str]
    status: ServerStatus
    status_detail: str | None
    secrets_set: frozenset[str]
    version: int
    created_at: datetime
    updated_at: datetime
    stages: tuple[str, ...] = ()
    #: The name of the tenant's ``ca`` keystore whose certificates are trusted (instead of
    #: inline ``ca_certificates``); read at connect time.
    ca_keystore: str | None = None


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int = 993
    security: str = "tls"
    username: str | None = None
    folder: str = "INBOX"
    sync_interval_minutes: int | None = None
    auth: str = "password"
    ca_certificates: str | None = None
    #: The tenant's ``ca`` keystore trusted for this inbox (instead of ``ca_certificates``).
    ca_keystore: str | None = None
    #: provider, client_id, tenant_id, scope, token_url, subject (secrets are sealed apart).
    oauth: dict[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class SmimeSettings:
    keystore_id: str
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class EmailAccount:
    id: str
    tenant_id: str
    address: str
    display_name: str
    reply_to: str | None
    mail_server_id: str | None
    is_default: bool
    imap: ImapSettings | None
    smime: SmimeSettings | None
    secrets_set: frozenset[str]
    last_sync_at: datetime | None
    last_sync_error: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    #: A short note on what the account is for (shown in lists; never in mail).
    description: str = ""


#: The stage key of the list for mail that names no stage.
NO_STAGE = ""
#: The stage whose mail goes to its real recipients unless its own list says otherwise.
PRODUCTION_STAGE = "production"


@dataclass(frozen=True, slots=True)
class TestList:
    """An email test list of an app on one stage: when active, it replaces every recipient.

    It names addresses and users of the tenant (by id); a user stands for the address the
    user has when a message is sent."""

    __test__ = False  # not a pytest class

    addresses: tuple[str, ...] = ()
    active: bool = False
    users: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.addresses and not self.users


@dataclass(frozen=True, slots=True)
class App:
    id: str
    tenant_id: str
    name: str
    #: The list for mail that names no stage (the app-level list of the API's first version).
    test_list: TestList
    created_at: datetime
    updated_at: datetime
    #: The list of each stage that has one, by stage name; a missing stage has none.
    stage_lists: dict[str, TestList] = field(default_factory=dict)

    def list_for(self, stage: str | None) -> TestList:
        """The list that applies to mail routed for ``stage`` (None: no stage named)."""
        if not stage:
            return self.test_list
        return self.stage_lists.get(stage, TestList())


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    tenant_id: str | None
    name: str
    role: str
    app_id: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    tenant_id: str
    email: str
    role: Role
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    tenant_id: str | None
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    object_name: str | None
    changes: tuple[str, ...] = field(default_factory=tuple)
