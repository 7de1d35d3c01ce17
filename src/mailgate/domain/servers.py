"""Mail servers (email configurations): engines, security modes and their rules."""

from __future__ import annotations

from enum import StrEnum


class Engine(StrEnum):
    SMTP = "smtp"
    SENDGRID = "sendgrid"
    MSGRAPH = "msgraph"
    CAPTURE = "capture"


#: Engines that rebuild a message from its parts (their APIs take JSON, not MIME), so a
#: signed MIME structure (S/MIME) cannot survive them.
RECOMPOSING_ENGINES = frozenset({Engine.SENDGRID.value, Engine.MSGRAPH.value})


class Security(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


class AuthKind(StrEnum):
    NONE = "none"
    PASSWORD = "password"  # noqa: S105 - the name of an auth mode, not a secret
    XOAUTH2 = "xoauth2"


class ServerStatus(StrEnum):
    OK = "ok"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


class TlsVersion(StrEnum):
    V1_2 = "1.2"
    V1_3 = "1.3"


DEFAULT_PORTS: dict[Security, int] = {Security.STARTTLS: 587, Security.TLS: 465, Security.NONE: 25}
