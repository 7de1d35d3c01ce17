"""URLs fit to receive credentials: an API base URL, an OAuth token endpoint.

A URL that an API key, an access token or a client secret is sent to must be HTTPS; plain
HTTP is accepted only to a loopback address (a local test server). It carries no user
info, query or fragment. The network policy still decides whether the host may be reached.
"""

from __future__ import annotations

import ipaddress

import httpx

from mailgate.errors import ConfigurationError

__all__ = ["checked_url"]


def checked_url(key: str, raw: str, *, field: str) -> str:
    """``raw`` if it is fit to receive credentials, without a trailing slash.

    HTTPS, or plain HTTP to a loopback address only (a local test server); no user info,
    query or fragment. Raises :class:`ConfigurationError` naming ``field`` otherwise.
    """
    raw = raw.strip()
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"server {key}: {field} is not a URL") from exc
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigurationError(f"server {key}: {field} must be an https:// URL")
    if url.userinfo or url.query or url.fragment:
        raise ConfigurationError(
            f"server {key}: {field} must not contain credentials, a query or a fragment"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        # The API key, token or client secret would cross the network in clear text.
        raise ConfigurationError(
            f"server {key}: {field} must use https (plain http is only allowed to a "
            "loopback address)"
        )
    return raw.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
