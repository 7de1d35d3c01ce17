"""Plain configuration values handed to engines and the probe (no storage types here).

Secrets are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailgate.domain.servers import AuthKind, Engine, Security, TlsVersion


class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    """OAuth settings of a server (``auth: xoauth2`` or the msgraph engine)."""

    provider: str  # "google" | "microsoft"
    client_id: str = ""
    client_secret: Secret | None = None
    tenant_id: str | None = None
    scope: str | None = None
    token_url: str | None = None
    service_account_json: Secret | None = None
    subject: str | None = None
    username: str | None = None
    password: Secret | None = None
    grant: str = "client_credentials"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything an engine needs to deliver through one mail server.

    ``key`` identifies the server for connection pooling and rate limiting; it changes
    whenever the server is edited (it includes the row version), so an edited server never
    reuses connections made with its old settings.
    """

    key: str
    engine: Engine = Engine.SMTP
    host: str = ""
    port: int = 587
    security: Security = Security.STARTTLS
    min_tls_version: TlsVersion = TlsVersion.V1_2
    verify_certificate: bool = True
    ca_certificates: str | None = None
    auth: AuthKind = AuthKind.NONE
    username: str | None = None
    password: Secret | None = None
    allow_insecure_auth: bool = False
    oauth: OAuthConfig | None = None
    api_key: Secret | None = None
    api_base_url: str | None = None
    sender_upn: str | None = None
    timeout_seconds: float = 30.0
    max_connections: int = 4
    rate_limit_per_minute: int | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def final_reply_timeout(self) -> float:
        """How long to wait for the reply after the final dot (RFC 5321 4.5.3.2.6: 10 min)."""
        return max(self.timeout_seconds * 4, 120.0)
