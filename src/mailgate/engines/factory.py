"""Building engines from server configurations, and keeping one per server.

:func:`engine_for` maps a :class:`~mailgate.engines.config.ServerConfig` to its engine.
:class:`EngineCache` keeps one engine (and so one connection pool) per ``ServerConfig.key``;
since the key changes whenever a server is edited, an edited server gets a fresh engine
and the engine of its old settings is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from mailgate.domain.servers import AuthKind
from mailgate.domain.servers import Engine as EngineKind
from mailgate.engines.base import Engine, TokenSource
from mailgate.engines.capture import CaptureEngine
from mailgate.engines.config import ServerConfig
from mailgate.engines.http.msgraph import GraphEngine
from mailgate.engines.http.sendgrid import SendGridEngine
from mailgate.engines.oauth.tokens import token_source_for
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.engines.smtp.xoauth2 import XOAuth2Engine
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

#: Builds the OAuth token source of one server (``auth: xoauth2``).
TokenSourceFactory = Callable[[ServerConfig], TokenSource]


class HttpEngineFactory(Protocol):
    """An HTTP engine's class: built from the server's settings and the dialer."""

    def __call__(self, config: ServerConfig, *, dialer: Dialer) -> Engine: ...


#: The HTTP engines, by the ``engine`` of a server. Adding one is a module in
#: ``engines/http/`` and a line here (docs/engines.md, "Adding an engine").
HTTP_ENGINES: dict[EngineKind, HttpEngineFactory] = {
    EngineKind.SENDGRID: SendGridEngine,
    EngineKind.MSGRAPH: GraphEngine,
}


def engine_for(
    config: ServerConfig,
    *,
    dialer: Dialer,
    tokens: TokenSource | None = None,
    token_sources: TokenSourceFactory | None = None,
) -> Engine:
    """A new engine for ``config``; raises :class:`ConfigurationError` if it cannot work.

    ``dialer`` opens every outbound connection (production passes the guarded dialer).
    For SMTP servers using XOAUTH2 the access tokens come from ``tokens`` when given,
    else from ``token_sources(config)``, else from the server's own OAuth settings
    (:func:`~mailgate.engines.oauth.token_source_for`, through ``dialer``); the engine is
    then wrapped in :class:`~mailgate.engines.smtp.xoauth2.XOAuth2Engine`, which refreshes a
    rejected token once. SendGrid and Microsoft Graph servers get their HTTP engines.
    """
    if config.engine is EngineKind.SMTP:
        if config.auth is not AuthKind.XOAUTH2:
            return SmtpEngine(config, dialer=dialer, tokens=tokens)
        owned = tokens is None
        if tokens is None:
            tokens = (token_sources or partial(token_source_for, dialer=dialer))(config)
        return XOAuth2Engine(
            SmtpEngine(config, dialer=dialer, tokens=tokens), tokens, owns_tokens=owned
        )
    build = HTTP_ENGINES.get(config.engine)
    if build is not None:
        return build(config, dialer=dialer)
    if config.engine is EngineKind.CAPTURE:
        return CaptureEngine()
    raise ConfigurationError(
        f"server {config.key}: the {config.engine} engine is not available in this version"
    )


class EngineCache:
    """One engine per server key, built on first use, closed when its key goes away.

    Not thread-safe; use from one event loop.
    """

    def __init__(
        self,
        *,
        dialer: Dialer,
        tokens: TokenSource | None = None,
        token_sources: TokenSourceFactory | None = None,
    ) -> None:
        self._dialer = dialer
        self._tokens = tokens
        self._token_sources = token_sources
        self._engines: dict[str, tuple[ServerConfig, Engine]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._engines)

    def __contains__(self, key: object) -> bool:
        return key in self._engines

    def get(self, config: ServerConfig) -> Engine:
        """The engine for ``config``; a server whose settings changed under the same key
        gets a new engine (the old one is closed in the background)."""
        entry = self._engines.get(config.key)
        if entry is not None:
            if entry[0] == config:
                return entry[1]
            self._close_later(entry[1])
        engine = engine_for(
            config, dialer=self._dialer, tokens=self._tokens, token_sources=self._token_sources
        )
        self._engines[config.key] = (config, engine)
        return engine

    async def retain(self, keys: Iterable[str]) -> None:
        """Close and forget every engine whose key is not in ``keys``."""
        keep = set(keys)
        gone = [key for key in self._engines if key not in keep]
        engines = [self._engines.pop(key)[1] for key in gone]
        await asyncio.gather(*(engine.aclose() for engine in engines))

    async def discard(self, key: str) -> None:
        """Close and forget the engine of ``key``, if there is one."""
        entry = self._engines.pop(key, None)
        if entry is not None:
            await entry[1].aclose()

    async def aclose(self) -> None:
        """Close every engine."""
        engines = [engine for _, engine in self._engines.values()]
        self._engines.clear()
        await asyncio.gather(*(engine.aclose() for engine in engines))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _close_later(self, engine: Engine) -> None:
        task = asyncio.get_running_loop().create_task(engine.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
