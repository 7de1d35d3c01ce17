"""How the SMTP submission listener is set up: address, TLS, and when AUTH may happen.

The AUTH rule (a token is the password, so it must not cross a network in clear):

* with a certificate and key (``MAILGATE_SMTP_TLS_CERT`` / ``MAILGATE_SMTP_TLS_KEY``)
  STARTTLS is offered (RFC 3207) and AUTH is only offered and accepted after it, on any
  listen address, loopback included: an operator who configured TLS wants it used;
* without them, AUTH in clear is allowed on a loopback listener only, whose traffic never
  leaves the host (an application next to Mailgate, or a TLS-terminating proxy on the
  same host);
* ``MAILGATE_SMTP_ALLOW_INSECURE_AUTH=true`` allows AUTH before (or without) TLS anyway,
  for a listener behind a TLS-terminating proxy on another host. Tokens then cross that
  network in clear.

A non-loopback listener without TLS and without that setting still starts, but no AUTH
can succeed on it; :attr:`SubmissionConfig.warning` says so and ``start_submission`` logs it.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from mailgate.errors import ConfigurationError
from mailgate.settings import Settings

#: Failed or repeated AUTH commands allowed on one connection before it is closed.
MAX_AUTH_ATTEMPTS = 3
#: Seconds a connection may stay idle between commands (RFC 5321 section 4.5.3.2.7).
IDLE_TIMEOUT = 300.0
#: Seconds ``stop`` lets a DATA command in progress finish before it closes connections.
SHUTDOWN_GRACE = 10.0
#: Open connections allowed at once, in all and from one client address.
MAX_CONNECTIONS = 256
MAX_CONNECTIONS_PER_CLIENT = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is a loopback address."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SubmissionConfig:
    """The listener's settings (read once from :class:`~mailgate.settings.Settings`)."""

    host: str = "127.0.0.1"
    #: The TCP port; 0 picks a free one (tests). ``start_submission`` treats a
    #: ``smtp_port`` of 0 in the settings as "disabled" before it gets here.
    port: int = 2525
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_insecure_auth: bool = False
    #: The name in the greeting and in Received fields; None: this host's FQDN.
    hostname: str | None = None
    idle_timeout: float = IDLE_TIMEOUT
    shutdown_grace: float = SHUTDOWN_GRACE
    #: More open connections than these (in all, from one address) are answered 421.
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT

    @classmethod
    def from_settings(cls, settings: Settings) -> SubmissionConfig:
        return cls(
            host=settings.host,
            port=settings.smtp_port,
            tls_cert=settings.smtp_tls_cert,
            tls_key=settings.smtp_tls_key,
            allow_insecure_auth=settings.smtp_allow_insecure_auth,
            max_connections=settings.smtp_max_connections,
            max_connections_per_client=settings.smtp_max_connections_per_client,
        )

    @property
    def has_tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def auth_needs_tls(self) -> bool:
        """Whether AUTH waits for STARTTLS (see the module docstring)."""
        if self.allow_insecure_auth:
            return False
        return self.has_tls or not is_loopback(self.host)

    @property
    def warning(self) -> str | None:
        """Why no client can authenticate on this listener, when that is so."""
        if self.auth_needs_tls and not self.has_tls:
            return (
                f"SMTP submission on {self.host}:{self.port} has no TLS certificate, so AUTH "
                "is refused on this non-loopback address: set MAILGATE_SMTP_TLS_CERT and "
                "MAILGATE_SMTP_TLS_KEY, or MAILGATE_SMTP_ALLOW_INSECURE_AUTH=true behind a "
                "TLS-terminating proxy"
            )
        return None

    def tls_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context (TLS 1.2 at least), or None without a certificate."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError(
                "SMTP submission TLS needs both MAILGATE_SMTP_TLS_CERT and "
                "MAILGATE_SMTP_TLS_KEY (only one is set)."
            )
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"Cannot load the SMTP submission certificate {self.tls_cert} with the key "
                f"{self.tls_key}: {exc}"
            ) from exc
        return context
