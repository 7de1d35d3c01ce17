"""How the HTTP server runs the application: which proxies' forwarded headers are believed.

Without ``MAILGATE_TRUSTED_PROXIES`` no ``X-Forwarded-For`` or ``X-Forwarded-Proto`` header
is believed, from loopback neither: the client address (sign-in throttles, audit) is the TCP
peer. Behind a reverse proxy, list its addresses (or CIDRs).
"""

from __future__ import annotations

from typing import Any

from mailgate.settings import Settings


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``proxy_headers`` and ``forwarded_allow_ips`` for ``settings``."""
    if not settings.trusted_proxies:
        # An explicit empty list: uvicorn's default (loopback) and FORWARDED_ALLOW_IPS unused.
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}
