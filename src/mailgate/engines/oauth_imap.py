"""Access tokens for IMAP inboxes (``AUTHENTICATE XOAUTH2``) from the SMTP engine's providers.

An inbox's ``imap.oauth`` settings become the same :class:`~.oauth.tokens.OAuthTokenSource` as a
mail server's: Google's JWT-bearer grant with a service account (``sub`` is the mailbox,
scope ``https://mail.google.com/``) or Microsoft's client-credentials grant (scope
``https://outlook.office365.com/.default``, the app-only IMAP scope of Exchange Online).
The token endpoint is reached through the dialer (network policy) and verified with the
system trust store plus the inbox's own ``ca_certificates``.
"""

from __future__ import annotations

from mailgate.domain.inbound import ImapTarget
from mailgate.domain.servers import AuthKind
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.oauth.tokens import OAuthTokenSource, token_source_for
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

__all__ = ["imap_token_source", "imap_tokens"]


def _secret(value: str) -> Secret | None:
    return Secret(value) if value else None


def imap_token_source(
    target: ImapTarget, *, dialer: Dialer, timeout: float = 30.0
) -> OAuthTokenSource:
    """The token source of an OAuth inbox; :class:`ConfigurationError` names what is
    missing. The caller closes it (``aclose``)."""
    oauth = target.oauth
    if oauth is None:
        raise ConfigurationError("inbox: imap.oauth is required for imap.auth xoauth2")
    config = ServerConfig(
        key="inbox",
        host=target.host,
        port=target.port,
        auth=AuthKind.XOAUTH2,
        username=target.username,
        ca_certificates=target.ca_certificates,
        timeout_seconds=timeout,
        oauth=OAuthConfig(
            provider=oauth.provider,
            client_id=oauth.client_id,
            client_secret=_secret(oauth.client_secret),
            tenant_id=oauth.tenant_id,
            scope=oauth.scope,
            token_url=oauth.token_url,
            service_account_json=_secret(oauth.service_account_json),
            # Google acts for the mailbox's user (domain-wide delegation).
            subject=oauth.subject or target.username,
        ),
    )
    return token_source_for(config, dialer=dialer)


def imap_tokens(dialer: Dialer, *, timeout: float = 30.0) -> _Factory:
    """A ``TokenFactory`` for the sync pipeline that dials through ``dialer``."""
    return _Factory(dialer, timeout)


class _Factory:
    def __init__(self, dialer: Dialer, timeout: float) -> None:
        self._dialer = dialer
        self._timeout = timeout

    def __call__(self, target: ImapTarget) -> OAuthTokenSource:
        return imap_token_source(target, dialer=self._dialer, timeout=self._timeout)
