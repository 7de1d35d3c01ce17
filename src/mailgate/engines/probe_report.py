"""The report of a connection probe ("test connection", SPEC.md section 5; API.md).

Values only: frozen dataclasses whose :meth:`ProbeReport.to_dict` is the JSON body of
``POST …/mail-servers/test``. Every error carries a stable code and a hint a person can act
on; the hints are kept here, next to the codes.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509


class ProbeSecurity(StrEnum):
    """How the connection was protected (the seeds' wording)."""

    INSECURE = "insecure"
    SMTPS = "SMTPS"
    STARTTLS = "STARTTLS"
    HTTPS = "HTTPS"  # the HTTP engines (SendGrid, Microsoft Graph)


class StepName(StrEnum):
    CONNECT = "connect"  # DNS, network policy and TCP (the dialer)
    TLS = "tls"  # implicit TLS handshake (RFC 8314 section 3.3)
    GREETING = "greeting"  # the 220 banner (RFC 5321 section 4.2)
    EHLO = "ehlo"
    STARTTLS = "starttls"  # RFC 3207
    EHLO_AFTER_TLS = "ehlo_after_tls"  # RFC 3207 section 4.2: everything is learnt again
    AUTH = "auth"  # RFC 4954
    QUIT = "quit"
    TOKEN = "token"  # HTTP engines: the OAuth token request  # noqa: S105 - a step name
    API = "api"  # HTTP engines: the read-only credentials check against the provider's API


class ProbeErrorCode(StrEnum):
    PORT_25_REFUSED = "port_25_refused"
    DESTINATION_REFUSED = "destination_refused"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    NETWORK_UNREACHABLE = "network_unreachable"
    CONNECTION_FAILED = "connection_failed"
    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    TLS_ON_PLAIN_PORT = "tls_on_plain_port"
    STARTTLS_ON_TLS_PORT = "starttls_on_tls_port"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    STARTTLS_FAILED = "starttls_failed"
    CERTIFICATE_UNTRUSTED = "certificate_untrusted"
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_HOSTNAME_MISMATCH = "certificate_hostname_mismatch"
    TLS_VERSION_TOO_LOW = "tls_version_too_low"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    SERVER_REJECTED = "server_rejected"
    PROTOCOL_ERROR = "protocol_error"
    INSECURE_AUTH_REFUSED = "insecure_auth_refused"
    AUTH_NOT_OFFERED = "auth_not_offered"
    AUTH_FAILED = "auth_failed"
    PERMISSION_MISSING = "permission_missing"
    AUTH_TEMPORARY_FAILURE = "auth_temporary_failure"
    OAUTH_TOKEN_FAILED = "oauth_token_failed"  # noqa: S105 - an error code
    INVALID_CONFIGURATION = "invalid_configuration"
    ENGINE_NOT_SUPPORTED = "engine_not_supported"


_HINTS: dict[ProbeErrorCode, str] = {
    ProbeErrorCode.PORT_25_REFUSED: (
        "Use the provider's submission port (587 with STARTTLS or 465 with TLS); an "
        "administrator can allow port 25 with MAILGATE_ALLOW_PORT_25=true."
    ),
    ProbeErrorCode.DESTINATION_REFUSED: (
        "Use the server's public host name. To reach a server on a private network, an "
        "administrator must add it to MAILGATE_ALLOWED_NETWORKS (CIDR or host:port)."
    ),
    ProbeErrorCode.DNS_FAILURE: (
        "Check the spelling of the host name ({host}); it does not resolve from this Mailgate "
        "instance."
    ),
    ProbeErrorCode.CONNECTION_REFUSED: (
        "Nothing accepts connections on {host}:{port}. Check the port (587 for STARTTLS, 465 "
        "for TLS) and that the server is running."
    ),
    ProbeErrorCode.NETWORK_UNREACHABLE: (
        "This Mailgate instance has no route to {host}; check its network and firewall."
    ),
    ProbeErrorCode.CONNECTION_FAILED: "Check the host, the port and the network path to them.",
    ProbeErrorCode.TIMEOUT: (
        "The server did not answer in time. A firewall may be dropping traffic to port "
        "{port}, or the server is overloaded; check the port and try again."
    ),
    ProbeErrorCode.CONNECTION_LOST: (
        "The server closed the connection. It may reject this client's address, or the "
        "security setting does not match the port."
    ),
    ProbeErrorCode.TLS_ON_PLAIN_PORT: (
        "port {port} expects implicit TLS; this server speaks plain SMTP — choose STARTTLS"
    ),
    ProbeErrorCode.STARTTLS_ON_TLS_PORT: (
        "port {port} expects implicit TLS (SMTPS); choose security TLS for this port, or "
        "use port 587 with STARTTLS"
    ),
    ProbeErrorCode.STARTTLS_NOT_OFFERED: (
        "The server does not offer STARTTLS on port {port}. Use port 465 with security TLS "
        "if the server supports it; Mailgate never falls back to plain text."
    ),
    ProbeErrorCode.STARTTLS_FAILED: (
        "The server offers STARTTLS but refused to start it; check the server's TLS setup."
    ),
    ProbeErrorCode.CERTIFICATE_UNTRUSTED: (
        "The certificate is not signed by a trusted authority. Add the issuing CA "
        "certificate to this server's CA certificates, or use a publicly trusted certificate."
    ),
    ProbeErrorCode.CERTIFICATE_EXPIRED: "The server's certificate has expired; renew it.",
    ProbeErrorCode.CERTIFICATE_NOT_YET_VALID: (
        "The server's certificate is not valid yet; check the clocks of both machines."
    ),
    ProbeErrorCode.CERTIFICATE_HOSTNAME_MISMATCH: (
        "The certificate is not issued for {host}. Use the host name the certificate names "
        "(often the provider's documented SMTP host), not an alias or an IP address."
    ),
    ProbeErrorCode.TLS_VERSION_TOO_LOW: (
        "The server does not support TLS {min_tls} or newer. Lower the minimum TLS version "
        "of this server (if allowed) or upgrade the mail server."
    ),
    ProbeErrorCode.TLS_HANDSHAKE_FAILED: (
        "The TLS handshake failed; check that the security setting matches the port "
        "(465: TLS, 587: STARTTLS)."
    ),
    ProbeErrorCode.SERVER_REJECTED: (
        "The server refused the session; it may not accept clients from this address."
    ),
    ProbeErrorCode.PROTOCOL_ERROR: (
        "The server does not speak SMTP on port {port}; check the host and the port."
    ),
    ProbeErrorCode.INSECURE_AUTH_REFUSED: (
        "Choose security STARTTLS or TLS. Only if the network is trusted, mark the server "
        "'allow insecure auth'."
    ),
    ProbeErrorCode.AUTH_NOT_OFFERED: (
        "The server offers no usable AUTH mechanism here. Many servers offer AUTH only after "
        "STARTTLS or on the submission port; if the server relays by address, set auth none."
    ),
    ProbeErrorCode.AUTH_FAILED: (
        "Check the user name and password. Providers such as Gmail, Yahoo and iCloud need an "
        "app password, and Microsoft 365 needs SMTP AUTH enabled for the mailbox."
    ),
    ProbeErrorCode.PERMISSION_MISSING: (
        "The credentials are valid but may not send mail: give the SendGrid API key the "
        "Mail Send permission, or grant the Microsoft app Mail.Send (with admin consent)."
    ),
    ProbeErrorCode.AUTH_TEMPORARY_FAILURE: "The server could not check credentials now; retry.",
    ProbeErrorCode.OAUTH_TOKEN_FAILED: (
        "Mailgate could not obtain an OAuth access token; check the OAuth settings."
    ),
    ProbeErrorCode.INVALID_CONFIGURATION: "Correct the server settings named in the message.",
    ProbeErrorCode.ENGINE_NOT_SUPPORTED: "This engine has no connection test yet.",
}


def hint_for(code: ProbeErrorCode, *, host: str, port: int, min_tls: str) -> str:
    """The hint for ``code``, filled in with the server's host, port and minimum TLS version."""
    return _HINTS[code].format(host=host, port=port, min_tls=min_tls)


@dataclass(frozen=True, slots=True)
class ProbeError:
    code: ProbeErrorCode
    message: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class ProbeStep:
    name: StepName
    ok: bool
    ms: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name.value, "ok": self.ok, "ms": self.ms}


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The server's leaf certificate; ``verified`` is false when verification was off."""

    subject: str
    issuer: str
    not_after: str  # ISO 8601, UTC
    verified: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after,
            "verified": self.verified,
        }


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str  # "TLSv1.3"
    cipher: str
    certificate: CertificateInfo | None

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "cipher": self.cipher,
            "certificate": self.certificate.to_dict() if self.certificate else None,
        }


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server said about itself; extensions are EHLO keywords (RFC 5321 4.1.1.1)."""

    banner: str
    extensions: tuple[str, ...] = ()
    auth_mechanisms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "banner": self.banner,
            "extensions": list(self.extensions),
            "auth_mechanisms": list(self.auth_mechanisms),
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The outcome of one probe. ``ok`` is true exactly when ``error`` is ``None``.

    ``server`` is ``None`` when no greeting was received, ``tls`` when no TLS session was
    established. ``warnings`` name weaknesses of a working setup (verification off, no TLS).
    """

    security: ProbeSecurity
    steps: tuple[ProbeStep, ...]
    tls: TlsInfo | None = None
    server: ServerInfo | None = None
    authenticated: bool = False
    error: ProbeError | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        """The JSON body of the test endpoints (API.md, "Mail servers")."""
        return {
            "ok": self.ok,
            "security": self.security.value,
            "tls": self.tls.to_dict() if self.tls else None,
            "server": self.server.to_dict() if self.server else None,
            "authenticated": self.authenticated,
            "steps": [step.to_dict() for step in self.steps],
            "error": self.error.to_dict() if self.error else None,
            "warnings": list(self.warnings),
        }


def certificate_info(ssl_object: ssl.SSLObject, *, verified: bool) -> CertificateInfo | None:
    """The peer certificate of a TLS connection as reported by a probe (None if absent)."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc.isoformat(),
        verified=verified,
    )
