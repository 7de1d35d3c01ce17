"""TLS client contexts for outbound connections.

Every context verifies certificates and host names unless the server is explicitly marked
``verify_certificate: false``. Per-server CA certificates are loaded into that server's own
context only; nothing here touches process-global trust settings.
"""

from __future__ import annotations

import ssl
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
