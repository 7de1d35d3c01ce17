"""The SMTP submission listener: aiosmtpd on the caller's event loop, with a clean stop.

aiosmtpd's ``Controller`` runs the server in a thread with its own event loop; Mailgate's
database and queue live on the loop of ``mailgate serve``, so the listener is created on
that loop directly (``loop.create_server``) with one aiosmtpd ``SMTP`` protocol per
connection.

Extensions offered: SIZE (the instance's ``max_message_bytes``, RFC 1870), 8BITMIME
(RFC 6152), SMTPUTF8 (RFC 6531), STARTTLS when a certificate is configured (RFC 3207),
AUTH PLAIN and LOGIN (RFC 4954) when :class:`SubmissionConfig` allows it on this connection.

``stop`` stops accepting and answers ``421`` on every open connection and closes it; a
connection in the middle of DATA first finishes it (its commit and the reply), for at most
``shutdown_grace`` seconds.

Open connections are capped in all and per client address (``max_connections``,
``max_connections_per_client``): one more is answered ``421`` and closed at once, and the
condition is logged once a minute (:mod:`mailgate.submission.gate`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Session, syntax

from mailgate.errors import ConfigurationError
from mailgate.services.context import Context
from mailgate.settings import Settings
from mailgate.submission import replies
from mailgate.submission.config import MAX_AUTH_ATTEMPTS, SubmissionConfig
from mailgate.submission.gate import (
    ConnectionGate,
    Notices,
    descriptor_warning,
    quiet_accept_errors,
)
from mailgate.submission.handler import SubmissionHandler

log = logging.getLogger("mailgate.submission")


class _Session(Session):
    """aiosmtpd's session without its deprecated ``login_data`` (which logs a warning on
    every successful AUTH); Mailgate keeps the login in ``auth_data``."""

    @property
    def login_data(self) -> None:
        return None

    @login_data.setter
    def login_data(self, value: object) -> None:
        pass


class _Protocol(SMTP):
    """One connection; registers itself so that ``stop`` can close it, and finishes the
    DATA command in progress (the commit and its reply) before it does."""

    def __init__(
        self,
        handler: SubmissionHandler,
        open_: set[_Protocol],
        gate: ConnectionGate,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._open = open_
        self._gate = gate
        self._client = ""
        self._admitted = False
        self._in_data = False
        self._leaving = False

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._gate.admit(self._client):
            # Over a cap: 421 and close, before aiosmtpd starts serving the connection.
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(replies.TOO_MANY_CONNECTIONS.encode() + b"\r\n")
            transport.close()
            return
        self._admitted = True
        self._open.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._gate.release(self._client)
        self._open.discard(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if not self._admitted:
            return False
        result: bool | None = super().eof_received()
        return result

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False
            if self._leaving:
                self._close(replies.SHUTTING_DOWN)

    def _handshaking(self) -> bool:
        """Whether a STARTTLS handshake is under way (no channel to reply on yet)."""
        session = self.session
        return self._tls_protocol is not None and (session is None or session.ssl is None)

    def _close(self, reply: str) -> None:
        if self._handshaking():
            self.abort()
            return
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(reply.encode() + b"\r\n")
            transport.close()

    def say_goodbye(self) -> asyncio.Task[None] | None:
        """Answer 421 and close, at once or after the DATA command in progress; the task
        serving the connection, to wait for."""
        self._leaving = True
        if not self._in_data:
            self._close(replies.SHUTTING_DOWN)
        task: asyncio.Task[None] | None = self._handler_coroutine
        return task

    def abort(self) -> None:
        """Close now, whatever the connection was doing (the TCP connection under TLS too)
        and end the task serving it: a TLS handshake cut short never reports the lost
        connection to aiosmtpd, whose task would wait for a command until the idle timeout."""
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.close()
        self._open.discard(self)
        task: asyncio.Task[None] | None = self._handler_coroutine
        if task is not None:
            task.cancel()


class SubmissionServer:
    """A running listener; ``await stop()`` (or ``async with``) ends it."""

    def __init__(
        self,
        server: asyncio.Server,
        handler: SubmissionHandler,
        connections: set[_Protocol],
        config: SubmissionConfig,
        restore_loop: Callable[[], None],
    ) -> None:
        self._server = server
        self._handler = handler
        self._connections = connections
        self.config = config
        self._restore_loop = restore_loop
        self._stopped = False

    @property
    def port(self) -> int:
        """The TCP port listened on (the chosen one when the configured port was 0)."""
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, let commits finish, close every connection (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.close()
        grace = self.config.shutdown_grace
        tasks = [t for c in list(self._connections) if (t := c.say_goodbye()) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for connection in list(self._connections):
            connection.abort()
        # A commit whose client is gone still runs (it is shielded): let it end.
        await self._handler.drain(grace)
        await self._server.wait_closed()
        self._restore_loop()
        log.info("SMTP submission stopped")

    async def __aenter__(self) -> SubmissionServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_submission(ctx: Context, config: SubmissionConfig) -> SubmissionServer:
    """Listen as ``config`` says (port 0: a free port) and serve until ``stop``."""
    tls = config.tls_context()
    hostname = config.hostname
    if hostname is None:
        hostname = await asyncio.to_thread(socket.getfqdn)
    handler = SubmissionHandler(ctx, hostname=hostname)
    connections: set[_Protocol] = set()
    notices = Notices()
    gate = ConnectionGate(config.max_connections, config.max_connections_per_client, notices)
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {
        "hostname": hostname,
        "ident": "Mailgate ESMTP",
        "data_size_limit": ctx.policy.max_message_bytes,
        "enable_SMTPUTF8": True,
        "tls_context": tls,
        "auth_require_tls": config.auth_needs_tls,
        "timeout": config.idle_timeout,
        # aiosmtpd's "*" covers every other command; only AUTH is kept short.
        "command_call_limit": {"AUTH": MAX_AUTH_ATTEMPTS, "*": 1_000_000},
        "loop": loop,
    }

    def factory() -> _Protocol:
        return _Protocol(handler, connections, gate, **options)

    try:
        server = await loop.create_server(factory, host=config.host, port=config.port)
    except OSError as exc:
        raise ConfigurationError(
            f"SMTP submission cannot listen on {config.host}:{config.port}: {exc.strerror}; "
            "choose another MAILGATE_SMTP_PORT (0 disables the listener)"
        ) from exc
    # aiosmtpd logs every command at INFO; Mailgate logs what matters itself.
    quiet = logging.getLogger("mail.log")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    running = SubmissionServer(
        server, handler, connections, config, quiet_accept_errors(loop, notices)
    )
    tls_note = "STARTTLS" if tls else "no TLS"
    log.info("SMTP submission on %s:%d (%s)", config.host, running.port, tls_note)
    for warning in (config.warning, descriptor_warning(config.max_connections)):
        if warning:
            log.warning(warning)
    return running


async def start_submission(ctx: Context, settings: Settings) -> SubmissionServer | None:
    """The submission listener ``settings`` describe, started; None when ``smtp_port`` is 0.

    Raises :class:`~mailgate.errors.ConfigurationError` for an unusable certificate or key.
    """
    if settings.smtp_port == 0:
        return None
    return await serve_submission(ctx, SubmissionConfig.from_settings(settings))
