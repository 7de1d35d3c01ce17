"""Test connection (SPEC.md section 5): connect, TLS, EHLO, STARTTLS, AUTH, QUIT — no mail.

:func:`probe` runs the SMTP dialogue of a server's settings step by step and returns a
:class:`~mailgate.engines.probe_report.ProbeReport`. It never starts a mail transaction (the
channel refuses MAIL, RCPT, DATA and BDAT), never falls back from TLS to plain text, and
connects only through the given dialer, so the network policy applies to it as to delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mailgate.domain.servers import AuthKind, Engine, Security, TlsVersion
from mailgate.engines.config import ServerConfig
from mailgate.engines.http.probe import probe_http
from mailgate.engines.probe_errors import classify, make_error
from mailgate.engines.probe_report import (
    ProbeError,
    ProbeErrorCode,
    ProbeReport,
    ProbeSecurity,
    ProbeStep,
    ServerInfo,
    StepName,
    TlsInfo,
    certificate_info,
)
from mailgate.engines.probe_sasl import authenticate
from mailgate.engines.probe_wire import Extensions, ProbeChannel
from mailgate.net.dialer import Dialer
from mailgate.net.tls import client_context

__all__ = ["Clock", "OAuthTokenSource", "probe"]

Clock = Callable[[], float]
#: Fetches an OAuth access token for a server with ``auth: xoauth2``.
OAuthTokenSource = Callable[[ServerConfig], Awaitable[str]]

_T = TypeVar("_T")

_SECURITY = {
    Security.NONE: ProbeSecurity.INSECURE,
    Security.TLS: ProbeSecurity.SMTPS,
    Security.STARTTLS: ProbeSecurity.STARTTLS,
}
_EHLO_NAME = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,255}$")

WARN_UNVERIFIED = (
    "Certificate verification is off: the connection is encrypted, but the server's "
    "identity is not checked, so another server could impersonate it."
)
WARN_PLAINTEXT = "The connection is not encrypted (security: none)."
WARN_INSECURE_AUTH = "Credentials were sent without TLS because the server allows insecure auth."
WARN_NO_QUIT = "The server did not acknowledge QUIT."


class Abort(Exception):
    """Ends the probe with ``error``; raised by steps and by the SASL exchange."""

    def __init__(self, error: ProbeError, *, clean: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.clean = clean  # the dialogue is still in step: QUIT may be sent


async def probe(
    config: ServerConfig,
    *,
    dialer: Dialer,
    clock: Clock = time.perf_counter,
    oauth_token: OAuthTokenSource | None = None,
) -> ProbeReport:
    """Test ``config`` without sending mail and report every step.

    Never raises for a failure of the server or the network: the report carries the error.
    SendGrid and Microsoft Graph servers are checked against their APIs without sending
    (:mod:`mailgate.engines.http.probe`); the capture engine gets ``engine_not_supported``.
    """
    if config.engine in (Engine.SENDGRID, Engine.MSGRAPH):
        return await probe_http(config, dialer=dialer, clock=clock)
    security = _SECURITY[config.security]
    if config.engine is not Engine.SMTP:
        error = make_error(
            ProbeErrorCode.ENGINE_NOT_SUPPORTED,
            f"The {config.engine.value} engine cannot be probed over SMTP.",
            config,
        )
        return ProbeReport(security=security, steps=(), error=error)
    return await _Probe(config, dialer=dialer, clock=clock, oauth_token=oauth_token).run()


class _Probe:
    """The state of one probe run; each ``_step_*`` method is one step of the report."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        dialer: Dialer,
        clock: Clock,
        oauth_token: OAuthTokenSource | None,
    ) -> None:
        self.config = config
        self.dialer = dialer
        self.clock = clock
        self.oauth_token = oauth_token
        self.timeout = config.timeout_seconds
        self.steps: list[ProbeStep] = []
        self.warnings: list[str] = []
        self.sock: socket.socket | None = None
        self.channel: ProbeChannel | None = None
        self.banner: str | None = None
        self.extensions = Extensions((), ())
        self.tls: TlsInfo | None = None
        self.authenticated = False

    async def run(self) -> ProbeReport:
        error: ProbeError | None = None
        if self.config.security is Security.NONE:
            self.warnings.append(WARN_PLAINTEXT)
        try:
            self._validate()
            await self._step(StepName.CONNECT, self._connect)
            if self.config.security is Security.TLS:
                await self._step(StepName.TLS, self._implicit_tls)
            await self._step(StepName.GREETING, self._greeting)
            await self._step(StepName.EHLO, self._ehlo)
            if self.config.security is Security.STARTTLS:
                await self._step(StepName.STARTTLS, self._starttls)
                await self._step(StepName.EHLO_AFTER_TLS, self._ehlo)
            if self.config.auth is not AuthKind.NONE:
                await self._step(StepName.AUTH, self._authenticate)
            await self._quit()
        except Abort as abort:
            error = abort.error
            if abort.clean:
                await self._quit_quietly()
        finally:
            await self._close()
        return ProbeReport(
            security=_SECURITY[self.config.security],
            steps=tuple(self.steps),
            tls=self.tls,
            server=self._server_info(),
            authenticated=self.authenticated,
            error=error,
            warnings=tuple(dict.fromkeys(self.warnings)),
        )

    async def _step(self, name: StepName, action: Callable[[], Awaitable[_T]]) -> _T:
        started = self.clock()
        try:
            result = await action()
        except Abort:
            self._record(name, ok=False, started=started)
            raise
        except Exception as exc:
            self._record(name, ok=False, started=started)
            raise Abort(classify(exc, name, self.config), clean=False) from exc
        self._record(name, ok=True, started=started)
        return result

    def _record(self, name: StepName, *, ok: bool, started: float) -> None:
        elapsed = max(self.clock() - started, 0.0)
        self.steps.append(ProbeStep(name, ok, round(elapsed * 1000, 1)))

    def _fail(self, code: ProbeErrorCode, message: str, *, clean: bool = True) -> Abort:
        return Abort(make_error(code, message, self.config), clean=clean)

    def _validate(self) -> None:
        config = self.config
        problem = None
        if not config.host:
            problem = "host is required"
        elif config.ehlo_name is not None and not _EHLO_NAME.match(config.ehlo_name):
            problem = "options.ehlo_name must be a host name or an address literal"
        elif config.auth is AuthKind.PASSWORD and not (config.username and config.password):
            problem = "auth password needs a username and a password"
        if problem is not None:
            raise self._fail(ProbeErrorCode.INVALID_CONFIGURATION, problem, clean=False)

    def _context(self) -> ssl.SSLContext:
        return client_context(self.config)

    # -- steps -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        self.sock = await self.dialer.connect(
            self.config.host, self.config.port, timeout=self.timeout
        )
        if self.config.security is not Security.TLS:
            reader, writer = await asyncio.open_connection(sock=self.sock)
            self.channel = ProbeChannel(reader, writer)

    async def _implicit_tls(self) -> None:
        # RFC 8314 section 3.3: TLS starts at once, before the server says anything.
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    sock=self.sock,
                    ssl=self._context(),
                    server_hostname=self.config.host,
                    ssl_handshake_timeout=self.timeout + 1,
                )
        except (ssl.SSLError, ConnectionError) as exc:
            # Some servers drop the connection instead of sending a protocol_version alert
            # (RFC 8446 section 6.2): a second handshake capped at TLS 1.2 tells them apart.
            if (
                not isinstance(exc, ssl.SSLCertVerificationError)
                and self.config.min_tls_version is TlsVersion.V1_3
                and await self._handshake_succeeds(maximum_version=ssl.TLSVersion.TLSv1_2)
            ):
                raise self._fail(
                    ProbeErrorCode.TLS_VERSION_TOO_LOW,
                    "The server speaks TLS 1.2 at most; this server requires TLS 1.3.",
                    clean=False,
                ) from exc
            raise
        self.channel = ProbeChannel(reader, writer)
        self._note_tls()

    async def _greeting(self) -> None:
        channel = self._channel()
        try:
            reply = await channel.read_reply(timeout=self.timeout)
        except TimeoutError:
            if channel.pending_looks_like_tls():
                raise self._fail(
                    ProbeErrorCode.STARTTLS_ON_TLS_PORT,
                    f"The server on port {self.config.port} answered with TLS, not with an "
                    "SMTP greeting.",
                    clean=False,
                ) from None
            if self.config.security is not Security.TLS and await self._handshake_succeeds():
                raise self._fail(
                    ProbeErrorCode.STARTTLS_ON_TLS_PORT,
                    f"No SMTP greeting within {self.timeout:g} s, but port {self.config.port} "
                    "completes a TLS handshake: it expects implicit TLS.",
                    clean=False,
                ) from None
            raise
        self.banner = reply.text
        if reply.code != 220:  # RFC 5321 3.1: 554 means "no service here"
            raise self._fail(ProbeErrorCode.SERVER_REJECTED, f"The server said: {reply}")

    async def _ehlo(self) -> None:
        channel = self._channel()
        name = self.config.ehlo_name or _address_literal(self.sock)
        # RFC 3207 section 4.2: after STARTTLS nothing learnt before may be used.
        self.extensions = Extensions((), ())
        reply = await channel.command("EHLO", name, timeout=self.timeout)
        if reply.code == 250:
            self.extensions = Extensions.parse(reply)
            return
        needs_ehlo = self.config.security is not Security.NONE or self.config.auth is not (
            AuthKind.NONE
        )
        if reply.code in (500, 502) and not needs_ehlo:
            # RFC 5321 4.1.4: a server without ESMTP still understands HELO.
            reply = await channel.command("HELO", name, timeout=self.timeout)
            if reply.code == 250:
                return
        raise self._fail(ProbeErrorCode.SERVER_REJECTED, f"EHLO was refused: {reply}")

    async def _starttls(self) -> None:
        channel = self._channel()
        if "STARTTLS" not in self.extensions:
            raise self._fail(
                ProbeErrorCode.STARTTLS_NOT_OFFERED,
                f"The server on port {self.config.port} does not offer STARTTLS.",
            )
        reply = await channel.command("STARTTLS", timeout=self.timeout)
        if reply.code != 220:
            raise self._fail(ProbeErrorCode.STARTTLS_FAILED, f"STARTTLS was refused: {reply}")
        if channel.has_buffered_input():
            raise self._fail(
                ProbeErrorCode.PROTOCOL_ERROR,
                "The server sent data after its reply to STARTTLS (RFC 3207 section 5).",
                clean=False,
            )
        await channel.start_tls(self._context(), host=self.config.host, timeout=self.timeout)
        self._note_tls()

    async def _authenticate(self) -> None:
        if self.tls is None:
            if not self.config.allow_insecure_auth:
                raise self._fail(
                    ProbeErrorCode.INSECURE_AUTH_REFUSED,
                    "Mailgate does not send credentials over an unencrypted connection.",
                )
            self.warnings.append(WARN_INSECURE_AUTH)
        await authenticate(
            self._channel(),
            self.config,
            self.extensions,
            timeout=self.timeout,
            oauth_token=self.oauth_token,
            fail=self._fail,
        )
        self.authenticated = True

    async def _quit(self) -> None:
        started = self.clock()
        try:
            reply = await self._channel().command("QUIT", timeout=self.timeout)
            ok = reply.code == 221
        except Exception:  # QUIT is a courtesy: any failure is only noted
            ok = False
        self._record(StepName.QUIT, ok=ok, started=started)
        if not ok:
            self.warnings.append(WARN_NO_QUIT)

    # -- helpers ---------------------------------------------------------------------------

    def _channel(self) -> ProbeChannel:
        if self.channel is None:
            raise RuntimeError("no connection")
        return self.channel

    async def _quit_quietly(self) -> None:
        if self.channel is None or self.banner is None:
            return
        with contextlib.suppress(Exception):  # best effort on the way out
            await self.channel.command("QUIT", timeout=min(self.timeout, 2.0))

    async def _close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        elif self.sock is not None:
            self.sock.close()

    async def _handshake_succeeds(self, *, maximum_version: ssl.TLSVersion | None = None) -> bool:
        """Whether a fresh connection completes an implicit TLS handshake (diagnosis only).

        Nothing is verified and nothing is sent after the handshake.
        """
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if maximum_version is not None:
            context.maximum_version = maximum_version
        try:
            async with asyncio.timeout(self.timeout):
                sock = await self.dialer.connect(
                    self.config.host, self.config.port, timeout=self.timeout
                )
                _, writer = await asyncio.open_connection(
                    sock=sock,
                    ssl=context,
                    server_hostname=self.config.host,
                    ssl_handshake_timeout=self.timeout + 1,
                )
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        await ProbeChannel(asyncio.StreamReader(), writer).close()
        return True

    def _note_tls(self) -> None:
        ssl_object = self._channel().ssl_object
        if ssl_object is None:
            return
        cipher = ssl_object.cipher()
        self.tls = TlsInfo(
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            certificate=certificate_info(ssl_object, verified=self.config.verify_certificate),
        )
        if not self.config.verify_certificate:
            self.warnings.append(WARN_UNVERIFIED)

    def _server_info(self) -> ServerInfo | None:
        if self.banner is None:
            return None
        return ServerInfo(
            banner=self.banner,
            extensions=self.extensions.keywords,
            auth_mechanisms=self.extensions.auth_mechanisms,
        )


def _address_literal(sock: socket.socket | None) -> str:
    """The local address as an EHLO address literal (RFC 5321 4.1.3)."""
    if sock is None:
        return "[127.0.0.1]"
    try:
        address = str(sock.getsockname()[0])
    except OSError:
        return "[127.0.0.1]"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"
