"""Turning a stored mail server and its secrets into the engine's :class:`ServerConfig`."""

from __future__ import annotations

from collections.abc import Mapping

from mailgate.domain.model import MailServer
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def server_config(
    server: MailServer, secrets: Mapping[str, str], *, trusted: str | None = None
) -> ServerConfig:
    """The engine configuration of ``server``; the key changes with every edit (version).

    ``trusted``: the PEM certificates of the keystore the server names (``ca_keystore``),
    read when the configuration is loaded; they take the place of inline ``ca_certificates``.
    A new content of the keystore makes a configuration that differs, so the engine cache
    builds a new engine with it.
    """
    oauth = None
    if server.oauth:
        o = server.oauth
        oauth = OAuthConfig(
            provider=str(o.get("provider") or ""),
            client_id=str(o.get("client_id") or ""),
            client_secret=_secret(secrets.get("oauth_client_secret")),
            tenant_id=o.get("tenant_id"),
            scope=o.get("scope"),
            token_url=o.get("token_url"),
            service_account_json=_secret(secrets.get("oauth_service_account_json")),
            subject=o.get("subject"),
            username=o.get("username"),
            password=_secret(secrets.get("oauth_password")),
            grant=str(o.get("grant") or "client_credentials"),
        )
    return ServerConfig(
        key=f"{server.id}:{server.version}",
        engine=server.engine,
        host=server.host or "",
        port=server.port,
        security=server.security,
        min_tls_version=server.min_tls_version,
        verify_certificate=server.verify_certificate,
        ca_certificates=trusted if server.ca_keystore else server.ca_certificates,
        auth=server.auth,
        username=server.username,
        password=_secret(secrets.get("password")),
        allow_insecure_auth=server.allow_insecure_auth,
        oauth=oauth,
        api_key=_secret(secrets.get("api_key")),
        api_base_url=server.api_base_url,
        sender_upn=server.sender_upn,
        timeout_seconds=server.timeout_seconds,
        max_connections=server.max_connections,
        rate_limit_per_minute=server.rate_limit_per_minute,
        options=dict(server.options),
    )
