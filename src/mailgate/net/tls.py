"""TLS client contexts for outbound connections, and what a failed handshake means.

Every context verifies certificates and host names unless the server is explicitly marked
``verify_certificate: false``. Per-server CA certificates are loaded into that server's own
context only; nothing here touches process-global trust settings.

:func:`certificate_problem` and the reason sets read OpenSSL's verdicts once, for delivery
(:func:`describe_tls_error`, a sentence) and for the connection test (an error code).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mailgate.domain.servers import TlsVersion

_MIN_VERSIONS = {
    TlsVersion.V1_2: ssl.TLSVersion.TLSv1_2,
    TlsVersion.V1_3: ssl.TLSVersion.TLSv1_3,
}


class TlsSettings(Protocol):
    """What a client context is built from; ``engines.config.ServerConfig`` has it."""

    @property
    def min_tls_version(self) -> TlsVersion: ...

    @property
    def ca_certificates(self) -> str | None: ...

    @property
    def verify_certificate(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class VerifiedTls:
    """:class:`TlsSettings` that verify against the system's trust store, TLS 1.2 or newer."""

    min_tls_version: TlsVersion = TlsVersion.V1_2
    ca_certificates: str | None = None
    verify_certificate: bool = True


def client_context(config: TlsSettings) -> ssl.SSLContext:
    """A fresh client context for ``config``: its minimum version, its CAs, its verification."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = _MIN_VERSIONS[config.min_tls_version]
    if config.ca_certificates:
        context.load_verify_locations(cadata=config.ca_certificates)
    if not config.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class CertificateProblem(StrEnum):
    """Why a certificate was rejected, from OpenSSL's ``X509_V_ERR_*`` code."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NAME_MISMATCH = "name_mismatch"
    UNTRUSTED = "untrusted"
    OTHER = "other"


# X509_V_ERR_* codes from OpenSSL's x509_vfy.h that people meet in practice.
_CERTIFICATE_CODES = {
    9: CertificateProblem.NOT_YET_VALID,
    10: CertificateProblem.EXPIRED,
    18: CertificateProblem.UNTRUSTED,  # self-signed
    19: CertificateProblem.UNTRUSTED,  # self-signed in the chain
    20: CertificateProblem.UNTRUSTED,  # unknown issuer
    21: CertificateProblem.UNTRUSTED,  # unable to verify the leaf
    27: CertificateProblem.UNTRUSTED,  # certificate not trusted
    62: CertificateProblem.NAME_MISMATCH,  # host name
    64: CertificateProblem.NAME_MISMATCH,  # IP address
}
#: OpenSSL reasons meaning "the peer did not answer with TLS at all": a plain-text SMTP
#: banner ("220 …") read as a TLS record header.
NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)
#: OpenSSL reasons meaning "no TLS version in common".
VERSION_REASONS = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}
)


def certificate_problem(exc: ssl.SSLCertVerificationError) -> CertificateProblem:
    """What was wrong with the peer's certificate."""
    return _CERTIFICATE_CODES.get(exc.verify_code, CertificateProblem.OTHER)


def describe_tls_error(exc: BaseException, *, host: str, min_version: str) -> str:
    """A sentence about a failed TLS handshake with ``host`` that says what to fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        problem = certificate_problem(exc)
        if problem is CertificateProblem.EXPIRED:
            return f"certificate for {host} has expired"
        if problem is CertificateProblem.NOT_YET_VALID:
            return f"certificate for {host} is not valid yet (check the server's clock)"
        if problem is CertificateProblem.NAME_MISMATCH:
            return (
                f"certificate is not valid for host {host} "
                "(use the host name the certificate was issued for)"
            )
        if problem is CertificateProblem.UNTRUSTED:
            return (
                f"certificate for {host} is not trusted: it is self-signed or issued by an "
                "unknown authority (add the issuing CA to this server's CA certificates)"
            )
        return f"certificate for {host} could not be verified: {exc.verify_message}"
    reason = getattr(exc, "reason", None) or str(exc)
    if reason == "WRONG_VERSION_NUMBER":
        return (
            f"{host} did not answer with TLS: the port may expect plain SMTP or STARTTLS "
            "(choose security STARTTLS or none)"
        )
    if reason in VERSION_REASONS:
        return f"{host} does not support TLS {min_version} or later"
    return f"TLS handshake with {host} failed: {reason}"
