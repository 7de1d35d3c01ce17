"""Request and response bodies of the configuration API (they make ``/openapi.json``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from mailgate.domain.model import (
    ApiToken,
    AuditEntry,
    MailServer,
    Stage,
    Tenant,
    User,
)
from mailgate.domain.server_schema import IMAP, IMAP_OAUTH, OAUTH, SERVER, FieldSpec
from mailgate.web.api.json_body import text_checked
from mailgate.web.api.json_values import json_value_problem

EngineName = Literal["smtp", "sendgrid", "msgraph", "capture"]
SecurityName = Literal["starttls", "tls", "none"]
AuthName = Literal["none", "password", "xoauth2"]
RoleName = Literal["owner", "admin", "developer", "sender", "viewer"]


class Strict(BaseModel):
    """Unknown fields are refused (422 naming them), never silently dropped."""

    model_config = ConfigDict(extra="forbid")
    #: Fields holding Strict models only, whose own fields check their values: when the
    #: strings are known to be checked (json_body) the items need no search of their own.
    _checked_by_items: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _json_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Lone surrogates and NaN/Infinity are refused before any other check."""
        checked = text_checked(info.context)
        if checked and (type(value) is str or info.field_name in cls._checked_by_items):
            return value  # json_body: pydantic's reader took it from checked JSON text
        problem = json_value_problem(value, strings_checked=checked)
        if problem is not None:
            where, why = problem
            # problems.py appends "where" to the field's name (headers.X-Campaign).
            raise PydanticCustomError("json_text", why, {"where": where})
        return value


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


# Tenants --------------------------------------------------------------------------------


class TenantIn(Strict):
    slug: str = Field(max_length=64)
    name: str = Field(max_length=200)


class TenantPatch(Strict):
    name: str = Field(max_length=200)


class TenantOut(BaseModel):
    id: str
    slug: str
    name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(
            id=t.id, slug=t.slug, name=t.name, created_at=t.created_at, updated_at=t.updated_at
        )


class StageIn(Strict):
    name: str = Field(max_length=64)


class StageOut(BaseModel):
    name: str
    mail_server_id: str | None

    @classmethod
    def of(cls, s: Stage) -> StageOut:
        return cls(name=s.name, mail_server_id=s.mail_server_id)


# Members -------------------------------------------------------------------------------


class TokenIn(Strict):
    name: str = Field(max_length=200)
    role: RoleName
    app: str | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    app: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken, app_name: str | None) -> TokenOut:
        return cls(
            id=t.id,
            name=t.name,
            role=t.role,
            app=app_name,
            prefix=t.prefix,
            created_at=t.created_at,
            last_used_at=t.last_used_at,
        )


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself. Shown only in this response.")


class UserIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=500)
    role: RoleName


class UserPatch(Strict):
    email: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=500)
    role: RoleName | None = None


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(id=u.id, email=u.email, role=u.role.value, created_at=u.created_at)


# Mail servers ---------------------------------------------------------------------------


def spec(field: FieldSpec, default: Any = None, **extra: Any) -> Any:
    """A pydantic ``Field`` with the bounds the server schema declares for ``field``."""
    bounds: dict[str, Any] = {}
    if field.kind in ("text", "choice") and field.max_length is not None:
        bounds["max_length"] = field.max_length
    if field.minimum is not None:
        bounds["gt" if field.exclusive_minimum else "ge"] = field.minimum
    if field.maximum is not None:
        bounds["le"] = field.maximum
    if field.secret:
        extra.setdefault("description", "Write-only.")
    return Field(default, **bounds, **extra)


def _s(name: str, default: Any = None, **extra: Any) -> Any:
    return spec(SERVER[name], default, **extra)


def _o(name: str) -> Any:
    return spec(OAUTH[name])


def _i(name: str, default: Any = None, **extra: Any) -> Any:
    return spec(IMAP[name], default, **extra)


def _io(name: str, **extra: Any) -> Any:
    return spec(IMAP_OAUTH[name], **extra)


class OAuthIn(Strict):
    provider: Literal["google", "microsoft"]
    token_url: str | None = _o("token_url")
    client_id: str | None = _o("client_id")
    client_secret: str | None = _o("client_secret")
    tenant_id: str | None = _o("tenant_id")
    scope: str | None = _o("scope")
    service_account_json: str | None = _o("service_account_json")
    subject: str | None = _o("subject")
    grant: Literal["client_credentials", "password"] | None = None
    username: str | None = _o("username")
    password: str | None = _o("password")


class MailServerIn(Strict):
    name: str = _s("name", ..., min_length=1)
    engine: EngineName = "smtp"
    provider: str | None = _s("provider")
    host: str | None = _s("host")
    port: int | None = _s("port")
    security: SecurityName | None = None
    min_tls_version: Literal["1.2", "1.3"] = "1.2"
    verify_certificate: bool = True
    ca_certificates: str | None = _s("ca_certificates")
    ca_keystore: str | None = _s(
        "ca_keystore", description="The name of a ca keystore to trust (not with ca_certificates)."
    )
    auth: AuthName = "none"
    username: str | None = _s("username")
    password: str | None = _s("password")
    allow_insecure_auth: bool = False
    oauth: OAuthIn | None = None
    api_key: str | None = _s("api_key")
    api_base_url: str | None = _s("api_base_url")
    sender_upn: str | None = _s("sender_upn")
    timeout_seconds: float = _s("timeout_seconds", 30)
    max_connections: int = _s("max_connections", 4)
    rate_limit_per_minute: int | None = _s("rate_limit_per_minute")
    stages: list[str] = Field(default_factory=list)
    is_default: bool = False
    fallback_server_id: str | None = _s("fallback_server_id")
    options: dict[str, str] = Field(default_factory=dict)


class MailServerPatch(Strict):
    name: str | None = _s("name", min_length=1)
    engine: EngineName | None = None
    provider: str | None = _s("provider")
    host: str | None = _s("host")
    port: int | None = _s("port")
    security: SecurityName | None = None
    min_tls_version: Literal["1.2", "1.3"] | None = None
    verify_certificate: bool | None = None
    ca_certificates: str | None = _s("ca_certificates")
    ca_keystore: str | None = _s(
        "ca_keystore", description="The name of a ca keystore to trust (not with ca_certificates)."
    )
    auth: AuthName | None = None
    username: str | None = _s("username")
    password: str | None = _s("password")
    allow_insecure_auth: bool | None = None
    oauth: OAuthIn | None = None
    api_key: str | None = _s("api_key")
    api_base_url: str | None = _s("api_base_url")
    sender_upn: str | None = _s("sender_upn")
    timeout_seconds: float | None = _s("timeout_seconds")
    max_connections: int | None = _s("max_connections")
    rate_limit_per_minute: int | None = _s("rate_limit_per_minute")
    stages: list[str] | None = None
    is_default: bool | None = None
    fallback_server_id: str | None = _s("fallback_server_id")
    options: dict[str, str] | None = None


class OAuthOut(BaseModel):
    provider: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    scope: str | None = None
    subject: str | None = None
    grant: str | None = None
    username: str | None = None
    client_secret_set: bool = False
    service_account_json_set: bool = False
    password_set: bool = False


class MailServerOut(BaseModel):
    id: str
    name: str
    engine: str
    provider: str | None
    host: str | None
    port: int
    security: str
    min_tls_version: str
    verify_certificate: bool
    ca_certificates: str | None
    ca_keystore: str | None
    auth: str
    username: str | None
    password_set: bool
    allow_insecure_auth: bool
    oauth: OAuthOut | None
    api_key_set: bool
    api_base_url: str | None
    sender_upn: str | None
    timeout_seconds: float
    max_connections: int
    rate_limit_per_minute: int | None
    stages: list[str]
    is_default: bool
    fallback_server_id: str | None
    options: dict[str, str]
    status: str
    status_detail: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, s: MailServer) -> MailServerOut:
        oauth = None
        if s.oauth is not None:
            oauth = OAuthOut(
                **{k: v for k, v in s.oauth.items() if k in OAuthOut.model_fields},
                client_secret_set="oauth_client_secret" in s.secrets_set,
                service_account_json_set="oauth_service_account_json" in s.secrets_set,
                password_set="oauth_password" in s.secrets_set,
            )
        return cls(
            id=s.id,
            name=s.name,
            engine=s.engine.value,
            provider=s.provider,
            host=s.host,
            port=s.port,
            security=s.security.value,
            min_tls_version=s.min_tls_version.value,
            verify_certificate=s.verify_certificate,
            ca_certificates=s.ca_certificates,
            ca_keystore=s.ca_keystore,
            auth=s.auth.value,
            username=s.username,
            password_set="password" in s.secrets_set,
            allow_insecure_auth=s.allow_insecure_auth,
            oauth=oauth,
            api_key_set="api_key" in s.secrets_set,
            api_base_url=s.api_base_url,
            sender_upn=s.sender_upn,
            timeout_seconds=s.timeout_seconds,
            max_connections=s.max_connections,
            rate_limit_per_minute=s.rate_limit_per_minute,
            stages=list(s.stages),
            is_default=s.is_default,
            fallback_server_id=s.fallback_server_id,
            options=s.options,
            status=s.status.value,
            status_detail=s.status_detail,
            created_at=s.created_at,
            updated_at=s.updated_at,
            version=s.version,
        )


# Email accounts -------------------------------------------------------------------------


class ImapOAuthIn(Strict):
    """Where an inbox's access tokens come from (``imap.auth: xoauth2``)."""

    provider: Literal["google", "microsoft"]
    client_id: str | None = _io("client_id")
    client_secret: str | None = _io("client_secret", description="Write-only (Microsoft).")
    tenant_id: str | None = _io("tenant_id")
    scope: str | None = _io("scope")
    token_url: str | None = _io("token_url")
    service_account_json: str | None = _io(
        "service_account_json", description="Write-only (Google)."
    )
    subject: str | None = _io("subject")


class ImapIn(Strict):
    host: str = _i("host", ...)
    port: int = _i("port", 993)
    security: Literal["tls", "starttls"] = "tls"
    username: str | None = _i("username")
    password: str | None = _i("password")
    folder: str = _i("folder", "INBOX")
    sync_interval_minutes: int | None = _i("sync_interval_minutes")
    auth: Literal["password", "xoauth2"] = "password"
    ca_certificates: str | None = _i("ca_certificates", description="PEM CA certificates to trust.")
    ca_keystore: str | None = _i(
        "ca_keystore", description="The name of a ca keystore to trust (not with ca_certificates)."
    )
    oauth: ImapOAuthIn | None = None


class SmimeIn(Strict):
    keystore_id: str
    alias: str | None = None


class EmailAccountIn(Strict):
    address: str = Field(max_length=320)
    display_name: str = Field(max_length=200)
    description: str = Field("", max_length=200, description="A short note on the account.")
    reply_to: str | None = Field(None, max_length=320)
    mail_server_id: str | None = None
    is_default: bool = False
    imap: ImapIn | None = None
    smime: SmimeIn | None = None


class EmailAccountPatch(Strict):
    address: str | None = Field(None, description="Read-only after creation: any change is 422.")
    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=200)
    reply_to: str | None = Field(None, max_length=320)
    mail_server_id: str | None = None
    is_default: bool | None = None
    imap: ImapIn | None = None
    smime: SmimeIn | None = None


# Providers and audit --------------------------------------------------------------------


class ProviderOut(BaseModel):
    key: str
    name: str
    engine: str
    host: str
    port: int
    security: str
    auth: str


class AuditOut(BaseModel):
    id: str
    at: datetime
    actor: str
    action: str
    object: dict[str, str | None]
    changes: list[str]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            object={"type": e.object_type, "id": e.object_id, "name": e.object_name},
            changes=list(e.changes),
        )


# Test connection ------------------------------------------------------------------------


class MailServerTestIn(MailServerIn):
    """Unsaved settings to test: the create body, with ``name`` optional and ``server_id``.

    ``server_id`` names a stored server whose secrets are used where the body omits them
    (or leaves them blank), as long as every field deciding where or how a secret travels
    (host, port, username, security, certificate checks, CAs, API and token URLs) is
    unchanged.
    """

    name: str = Field("", max_length=200)
    server_id: str | None = Field(None, description="Reuse this stored server's secrets.")


class ProbeErrorOut(BaseModel):
    code: str
    message: str
    hint: str


class ProbeStepOut(BaseModel):
    name: str
    ok: bool
    ms: float


class CertificateOut(BaseModel):
    subject: str
    issuer: str
    not_after: str
    verified: bool


class TlsOut(BaseModel):
    version: str
    cipher: str
    certificate: CertificateOut | None


class ProbeServerOut(BaseModel):
    banner: str
    extensions: list[str]
    auth_mechanisms: list[str]


class ProbeReportOut(BaseModel):
    """The report of a connection test (API.md); ``ok`` is true exactly when ``error`` is null."""

    ok: bool
    security: Literal["insecure", "SMTPS", "STARTTLS", "HTTPS"]
    tls: TlsOut | None
    server: ProbeServerOut | None
    authenticated: bool
    steps: list[ProbeStepOut]
    error: ProbeErrorOut | None
    warnings: list[str] = Field(default_factory=list)
