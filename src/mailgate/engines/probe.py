"""Test connection (SPEC.md section 5): the probe of the server's engine, without sending.

:func:`probe` is what the product calls. It picks the engine's own probe, which runs on the
same seam as delivery (``Engine.probe()`` next to ``Engine.deliver()``, ARCHITECTURE.md):

* SMTP: :func:`mailgate.engines.smtp.probe.probe_smtp` opens the delivery session with an
  observer and says QUIT where delivery would say MAIL;
* SendGrid and Microsoft Graph: the engine, built as delivery builds it, checks its
  credentials against the provider's API without sending (``engine.probe()``);
* capture: ``engine_not_supported``.

Every connection goes through the given dialer, so the network policy applies to a test
as to delivery. Never raises for a failure of the server or the network.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from mailgate.domain.servers import Engine
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.factory import HTTP_ENGINES
from mailgate.engines.probe_errors import make_error
from mailgate.engines.probe_report import ProbeErrorCode, ProbeReport, ProbeSecurity
from mailgate.engines.smtp.probe import (
    SECURITY,
    WARN_INSECURE_AUTH,
    WARN_NO_QUIT,
    WARN_PLAINTEXT,
    WARN_UNVERIFIED,
    Clock,
    probe_smtp,
)
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

__all__ = [
    "WARN_INSECURE_AUTH",
    "WARN_NO_QUIT",
    "WARN_PLAINTEXT",
    "WARN_UNVERIFIED",
    "Clock",
    "OAuthTokenSource",
    "probe",
]

#: Fetches an OAuth access token for a server with ``auth: xoauth2``.
OAuthTokenSource = Callable[[ServerConfig], Awaitable[str]]


class _FetchedTokens:
    """A session token source over an :data:`OAuthTokenSource` callable."""

    def __init__(self, fetch: OAuthTokenSource, config: ServerConfig) -> None:
        self._fetch = fetch
        self._config = config

    async def access_token(self) -> Secret:
        try:
            return Secret(await self._fetch(self._config))
        except Exception as exc:  # any token failure ends the test alike
            raise ConfigurationError(f"token request failed ({type(exc).__name__})") from exc


async def probe(
    config: ServerConfig,
    *,
    dialer: Dialer,
    clock: Clock = time.perf_counter,
    oauth_token: OAuthTokenSource | None = None,
) -> ProbeReport:
    """Test ``config`` without sending mail and report every step (see the module)."""
    if config.engine is Engine.SMTP:
        tokens = _FetchedTokens(oauth_token, config) if oauth_token is not None else None
        return await probe_smtp(config, dialer=dialer, tokens=tokens, clock=clock)
    build = HTTP_ENGINES.get(config.engine)
    if build is None:
        error = make_error(
            ProbeErrorCode.ENGINE_NOT_SUPPORTED,
            f"The {config.engine.value} engine cannot be probed.",
            config,
        )
        return ProbeReport(security=SECURITY[config.security], steps=(), error=error)
    try:
        engine = build(config, dialer=dialer)
    except ConfigurationError as exc:
        error = make_error(ProbeErrorCode.INVALID_CONFIGURATION, str(exc), config)
        return ProbeReport(security=ProbeSecurity.HTTPS, steps=(), error=error)
    try:
        return await engine.probe(clock=clock)
    finally:
        await engine.aclose()
