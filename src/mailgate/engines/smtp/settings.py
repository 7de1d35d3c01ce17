"""The SMTP engine's view of a :class:`~mailgate.engines.config.ServerConfig`.

Everything is checked once, when the engine is built: a bad option or an unsafe combination
raises :class:`~mailgate.errors.ConfigurationError` naming what to change, instead of
failing every delivery later.

Recognised ``options`` (all strings, as stored; declared in
:data:`mailgate.domain.server_schema.OPTIONS`):

``ehlo_name``                    the name sent with EHLO (default: this host's FQDN)
``disable_auth_plain``           "true" uses AUTH LOGIN even when PLAIN is offered
``disable_pipelining``           "true" never pipelines, even when the server offers it
``disable_chunking``             "true" sends DATA, never BDAT, even when CHUNKING is offered
``connect_timeout``              seconds for TCP connect and TLS handshake (default: timeout)
``greeting_timeout``             seconds to wait for the 220 greeting (default: timeout)
``idle_timeout``                 seconds an unused pooled connection is kept (default 30)
``max_messages_per_connection``  messages sent on one connection before it is renewed (1000)
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from functools import cache

from mailgate.domain.server_schema import EHLO_NAME, FALSE_WORDS, TRUE_WORDS
from mailgate.domain.servers import AuthKind, Engine, Security
from mailgate.engines.config import Secret, ServerConfig
from mailgate.errors import ConfigurationError
from mailgate.net.tls import client_context

# The option keys and their rules are declared once, in the server schema; saving a server
# checks them with the same rules, so a saved server always builds.
_TRUE = TRUE_WORDS
_FALSE = FALSE_WORDS
_EHLO_NAME = EHLO_NAME


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Validated, ready-to-use settings for SMTP sessions to one server."""

    host: str
    port: int
    security: Security
    tls_context: ssl.SSLContext | None
    min_tls_version: str
    ehlo_name: str
    auth: AuthKind
    username: str | None
    password: Secret | None
    allow_insecure_auth: bool
    login_only: bool
    pipelining: bool
    chunking: bool
    connect_timeout: float
    greeting_timeout: float
    command_timeout: float
    final_timeout: float
    idle_timeout: float
    max_messages_per_connection: int

    @classmethod
    def from_config(
        cls, config: ServerConfig, *, refuse_insecure_auth: bool = True
    ) -> SessionSettings:
        """Check ``config`` for the SMTP engine; raises :class:`ConfigurationError`.

        ``refuse_insecure_auth=False`` (the connection test) lets credentials over plain
        text through here; the session still refuses to send them at AUTH.
        """
        if config.engine is not Engine.SMTP:
            raise ConfigurationError(f"server {config.key} uses engine {config.engine}, not smtp")
        if not config.host:
            raise ConfigurationError(f"server {config.key}: host is required")
        if not 0 < config.port < 65536:
            raise ConfigurationError(f"server {config.key}: port {config.port} is not valid")
        if config.timeout_seconds <= 0:
            raise ConfigurationError(f"server {config.key}: timeout_seconds must be positive")
        if config.max_connections < 1:
            raise ConfigurationError(f"server {config.key}: max_connections must be at least 1")
        if config.auth is not AuthKind.NONE:
            if not config.username:
                raise ConfigurationError(f"server {config.key}: auth needs a username")
            if config.auth is AuthKind.PASSWORD and not config.password:
                raise ConfigurationError(f"server {config.key}: auth password needs a password")
            insecure = config.security is Security.NONE and not config.allow_insecure_auth
            if insecure and refuse_insecure_auth:
                raise ConfigurationError(
                    f"server {config.key}: refusing to authenticate over an unencrypted "
                    "connection; choose security STARTTLS or TLS, or allow insecure auth"
                )
        options = config.options
        ehlo_name = options.get("ehlo_name", "").strip() or default_ehlo_name()
        if not _EHLO_NAME.match(ehlo_name):
            raise ConfigurationError(f"server {config.key}: ehlo_name {ehlo_name!r} is not valid")
        timeout = config.timeout_seconds
        tls = config.security in (Security.STARTTLS, Security.TLS)
        return cls(
            host=config.host,
            port=config.port,
            security=config.security,
            tls_context=client_context(config) if tls else None,
            min_tls_version=str(config.min_tls_version),
            ehlo_name=ehlo_name,
            auth=config.auth,
            username=config.username,
            password=config.password,
            allow_insecure_auth=config.allow_insecure_auth,
            login_only=_flag(config, "disable_auth_plain"),
            pipelining=not _flag(config, "disable_pipelining"),
            chunking=not _flag(config, "disable_chunking"),
            connect_timeout=_seconds(config, "connect_timeout", timeout),
            greeting_timeout=_seconds(config, "greeting_timeout", timeout),
            command_timeout=timeout,
            final_timeout=config.final_reply_timeout,
            idle_timeout=_seconds(config, "idle_timeout", 30.0),
            max_messages_per_connection=int(_seconds(config, "max_messages_per_connection", 1000)),
        )


@cache
def default_ehlo_name() -> str:
    """This host's fully qualified name, or an address literal when it has none."""
    name = socket.getfqdn()
    return name if _EHLO_NAME.match(name) and "." in name else "[127.0.0.1]"


def _flag(config: ServerConfig, name: str) -> bool:
    value = config.options.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"server {config.key}: option {name} must be true or false")


def _seconds(config: ServerConfig, name: str, default: float) -> float:
    raw = config.options.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(f"server {config.key}: option {name} must be a positive number")
    return value
