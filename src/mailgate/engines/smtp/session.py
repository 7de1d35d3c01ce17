"""One SMTP connection, opened up to "ready for MAIL": connect, TLS, EHLO, AUTH.

Security is fail-closed (SPEC section 3): with ``starttls`` the session refuses to go on
(no AUTH, no MAIL) unless the server offers STARTTLS, accepts it and completes a verified
handshake; passwords are only sent over TLS unless ``allow_insecure_auth`` says otherwise.

Delivery and the connection test open sessions the same way: the test passes a
:class:`SessionObserver`, which is told when each step starts and ends, what the banner
said and which TLS session was negotiated, and then says QUIT instead of MAIL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Protocol

from mailgate.domain.delivery import OutcomeKind
from mailgate.domain.outcomes import Failure, Phase
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.base import TokenSource
from mailgate.engines.probe_report import StepName
from mailgate.engines.smtp.diagnose import Refusal, SmtpError
from mailgate.engines.smtp.settings import SessionSettings
from mailgate.engines.smtp.transcript import Transcript
from mailgate.engines.smtp.wire import ConnectionLost, ProtocolError, Reply, SmtpWire
from mailgate.errors import ConfigurationError, PolicyViolation
from mailgate.net.dialer import Dialer
from mailgate.net.tls import describe_tls_error

_QUIT_TIMEOUT = 2.0


class SessionObserver(Protocol):
    """Watches a session open (the connection test); delivery passes none."""

    def started(self, step: StepName) -> None: ...

    def finished(self, step: StepName, *, ok: bool) -> None: ...

    def greeted(self, banner: str) -> None: ...

    def secured(self, ssl_object: ssl.SSLObject) -> None: ...


@contextlib.contextmanager
def _step(observer: SessionObserver | None, step: StepName) -> Iterator[None]:
    if observer is None:
        yield
        return
    observer.started(step)
    ok = False
    try:
        yield
        ok = True
    finally:
        observer.finished(step, ok=ok)


class SmtpSession:
    """A connected, greeted (and, as configured, TLS-protected and authenticated) session."""

    def __init__(
        self, wire: SmtpWire, settings: SessionSettings, observer: SessionObserver | None = None
    ) -> None:
        self.wire = wire
        self.settings = settings
        self.observer = observer
        self.extensions: dict[str, str] = {}
        #: The SASL mechanism used for AUTH, once chosen.
        self.mechanism: str | None = None
        self.opened_at = time.monotonic()
        self.last_used = self.opened_at
        self.uses = 0
        #: Set by the pool when the next transaction's envelope was written behind the
        #: previous message's content (see :mod:`mailgate.engines.smtp.pool`).
        self.envelope_written = False

    # -- opening --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: SessionSettings,
        *,
        dialer: Dialer,
        transcript: Transcript,
        tokens: TokenSource | None = None,
    ) -> SmtpSession:
        """Connect and prepare a session; raises :class:`SmtpError` on any failure."""
        session = await cls.connect(settings, dialer=dialer, transcript=transcript)
        try:
            await session.handshake(transcript, tokens)
        except BaseException:
            session.abort()
            raise
        return session

    @classmethod
    async def connect(
        cls,
        settings: SessionSettings,
        *,
        dialer: Dialer,
        transcript: Transcript,
        observer: SessionObserver | None = None,
    ) -> SmtpSession:
        """Connect (and, for implicit TLS, start TLS); raises :class:`SmtpError`."""
        wire = await _connect(settings, dialer=dialer, transcript=transcript, observer=observer)
        return cls(wire, settings, observer)

    async def handshake(self, transcript: Transcript, tokens: TokenSource | None) -> None:
        """Greeting, EHLO, STARTTLS and AUTH as configured; raises :class:`SmtpError`.

        The caller closes the session when this raises: :meth:`quit` when the error has a
        reply code or is a refusal of Mailgate's own (the dialogue is still in step),
        :meth:`abort` otherwise.
        """
        settings = self.settings
        with _step(self.observer, StepName.GREETING):
            greeting = await self.read(
                Phase.GREETING, transcript, timeout=settings.greeting_timeout
            )
            if self.observer is not None:
                self.observer.greeted(greeting.text)
            if greeting.code != 220:  # RFC 5321 section 4.3.2: 220 or 554 (no service)
                raise SmtpError.from_reply(greeting, phase=Phase.GREETING, what="connection")
        with _step(self.observer, StepName.EHLO):
            await self._ehlo(transcript)
        if settings.security is Security.STARTTLS:
            with _step(self.observer, StepName.STARTTLS):
                await self._starttls(transcript)
            # RFC 3207 section 4.2: forget what was learnt before TLS and ask again.
            with _step(self.observer, StepName.EHLO_AFTER_TLS):
                await self._ehlo(transcript)
        if settings.auth is not AuthKind.NONE:
            with _step(self.observer, StepName.AUTH):
                await self._authenticate(transcript, tokens)

    async def _ehlo(self, transcript: Transcript) -> None:
        name = self.settings.ehlo_name
        self.extensions = {}
        reply = await self.command(f"EHLO {name}", Phase.EHLO, transcript)
        if reply.code == 250:
            self.extensions = parse_extensions(reply)
            return
        if reply.code in (500, 502) and self.settings.security is not Security.STARTTLS:
            # RFC 5321 section 4.1.4: a server without ESMTP gets HELO (no extensions).
            reply = await self.command(f"HELO {name}", Phase.EHLO, transcript)
            if reply.code == 250:
                self.extensions = {}
                return
        raise SmtpError.from_reply(reply, phase=Phase.EHLO, what="EHLO")

    async def _starttls(self, transcript: Transcript) -> None:
        host = self.settings.host
        if "STARTTLS" not in self.extensions:
            transcript.note("STARTTLS is required but not offered: closing without sending mail")
            raise SmtpError.local(
                f"{host} does not offer STARTTLS; security is set to STARTTLS, so Mailgate "
                "refuses to continue without encryption",
                phase=Phase.STARTTLS,
                kind=OutcomeKind.DEFERRED,
                connection_error=True,
                refusal=Refusal.STARTTLS_NOT_OFFERED,
            )
        reply = await self.command("STARTTLS", Phase.STARTTLS, transcript)
        if reply.code != 220:
            transcript.note("STARTTLS was refused: closing without sending mail")
            error = SmtpError.from_reply(reply, phase=Phase.STARTTLS, what="STARTTLS")
            error.message = f"{host} refused STARTTLS ({reply}); not continuing without TLS"
            raise error
        context = self.settings.tls_context
        assert context is not None
        try:
            await self.wire.start_tls(
                context, server_hostname=host, timeout=self.settings.connect_timeout
            )
        except ProtocolError as exc:
            raise SmtpError.from_failure(Failure.PROTOCOL, str(exc), phase=Phase.STARTTLS) from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise _tls_error(exc, self.settings, transcript, Phase.STARTTLS) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise SmtpError.from_failure(
                Failure.TLS,
                f"TLS handshake with {host} did not complete: {exc or 'timed out'}",
                phase=Phase.STARTTLS,
            ) from exc
        transcript.tls_version = self.wire.tls_version()
        transcript.note(f"TLS established ({transcript.tls_version})")
        _secured(self.wire, self.observer)

    async def _authenticate(self, transcript: Transcript, tokens: TokenSource | None) -> None:
        settings = self.settings
        if self.wire.tls_version() is None and not settings.allow_insecure_auth:
            raise SmtpError.local(
                "refusing to send credentials over an unencrypted connection",
                phase=Phase.AUTH,
                kind=OutcomeKind.AUTH_FAILED,
                refusal=Refusal.INSECURE_AUTH,
            )
        offered = set(self.auth_mechanisms)
        username = settings.username or ""
        if settings.auth is AuthKind.XOAUTH2:
            if "XOAUTH2" not in offered:
                raise _no_mechanism(settings.host, "XOAUTH2", offered)
            self.mechanism = "XOAUTH2"
            token = await _access_token(tokens, settings.host)
            transcript.add_secrets([token])
            blob = f"user={username}\x01auth=Bearer {token}\x01\x01"
            await self._sasl(transcript, "XOAUTH2", [blob], secret=blob)
            return
        password = settings.password.reveal() if settings.password else ""
        if "PLAIN" in offered and not settings.login_only:
            # RFC 4616: authzid NUL authcid NUL passwd, as an initial response.
            self.mechanism = "PLAIN"
            blob = f"\0{username}\0{password}"
            await self._sasl(transcript, "PLAIN", [blob], secret=blob)
        elif "LOGIN" in offered:
            self.mechanism = "LOGIN"
            await self._sasl(transcript, "LOGIN", [username, password], secret=password)
        else:
            raise _no_mechanism(settings.host, "PLAIN or LOGIN", offered)

    async def _sasl(
        self, transcript: Transcript, mechanism: str, responses: list[str], *, secret: str
    ) -> None:
        """RFC 4954 section 4: AUTH with an initial response, then one per 334 challenge."""
        transcript.add_secrets([secret])
        encoded = [base64.b64encode(r.encode("utf-8")).decode("ascii") for r in responses]
        timeout = self.settings.command_timeout
        self.wire.write(f"AUTH {mechanism} {encoded[0]}\r\n".encode("ascii"))
        transcript.client_redacted(f"AUTH {mechanism}")
        for response in encoded[1:]:
            reply = await self.read(Phase.AUTH, transcript, timeout=timeout)
            if reply.code != 334:
                raise SmtpError.from_reply(reply, phase=Phase.AUTH, what="AUTH")
            self.wire.write(response.encode("ascii") + b"\r\n")
            transcript.client_redacted()
        reply = await self.read(Phase.AUTH, transcript, timeout=timeout)
        if reply.code == 334:
            # XOAUTH2 sends its error as a challenge; an empty line ends the exchange.
            self.wire.write(b"\r\n")
            transcript.client("")
            reply = await self.read(Phase.AUTH, transcript, timeout=timeout)
        if reply.code != 235:
            raise SmtpError.from_reply(reply, phase=Phase.AUTH, what="AUTH")

    # -- commands -------------------------------------------------------------------------

    async def command(self, line: str, phase: Phase, transcript: Transcript) -> Reply:
        """Send one command and read its reply with the command timeout."""
        try:
            self.wire.write(line.encode("ascii") + b"\r\n")
        except ConnectionLost as exc:
            raise SmtpError.from_failure(Failure.CONNECTION_LOST, str(exc), phase=phase) from exc
        transcript.client(line)
        return await self.read(phase, transcript, timeout=self.settings.command_timeout)

    async def read(self, phase: Phase, transcript: Transcript, *, timeout: float) -> Reply:
        """Read the next reply, turning wire failures into :class:`SmtpError`."""
        try:
            reply = await self.wire.read_reply(timeout=timeout)
        except TimeoutError as exc:
            if self.wire.pending_looks_like_tls():
                message = f"{self.settings.host} answered with TLS, not with SMTP ({phase})"
                transcript.note(message)
                error = ProtocolError(message, looks_like_tls=True)
                raise SmtpError.from_failure(Failure.PROTOCOL, message, phase=phase) from error
            message = f"no reply from {self.settings.host} within {timeout:g} s ({phase})"
            transcript.note(message)
            raise SmtpError.from_failure(Failure.TIMEOUT, message, phase=phase) from exc
        except ConnectionLost as exc:
            message = f"{self.settings.host} closed the connection ({phase})"
            transcript.note(message)
            raise SmtpError.from_failure(Failure.CONNECTION_LOST, message, phase=phase) from exc
        except ProtocolError as exc:
            transcript.note(str(exc))
            raise SmtpError.from_failure(Failure.PROTOCOL, str(exc), phase=phase) from exc
        transcript.server(reply.code, reply.lines)
        if reply.code == 421:
            # RFC 5321 section 3.8: the server is closing the channel.
            self.wire.close()
        return reply

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the server announced in its last EHLO reply (RFC 4954 3)."""
        return tuple(dict.fromkeys(self.extensions.get("AUTH", "").upper().split()))

    @property
    def pipelining(self) -> bool:
        """Whether commands are pipelined: offered (RFC 2920) and not disabled."""
        return self.settings.pipelining and "PIPELINING" in self.extensions

    @property
    def chunking(self) -> bool:
        """Whether content goes out as BDAT instead of DATA: CHUNKING is offered (RFC 3030
        section 2) and not disabled."""
        return self.settings.chunking and "CHUNKING" in self.extensions

    @property
    def size_limit(self) -> int | None:
        """The SIZE the server declared (RFC 1870 section 4), or ``None`` for no limit."""
        value = self.extensions.get("SIZE", "").strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    def usable(self, *, now: float) -> bool:
        """Whether this idle session may carry another message."""
        settings = self.settings
        return (
            self.wire.is_open
            and not self.wire.has_pending_replies
            and now - self.last_used < settings.idle_timeout
            and self.uses < settings.max_messages_per_connection
        )

    async def quit(self, *, timeout: float = _QUIT_TIMEOUT) -> bool:
        """Say QUIT (RFC 5321 section 4.1.1.10) and close; never raises.

        Returns whether the server acknowledged it with 221.
        """
        try:
            if self.wire.is_open:
                self.wire.write(b"QUIT\r\n")
                reply = await self.wire.read_reply(timeout=timeout)
                return reply.code == 221
        except (TimeoutError, ConnectionError, ProtocolError):
            pass
        finally:
            self.wire.close()
        return False

    def abort(self) -> None:
        """Drop the connection at once."""
        self.wire.abort()


async def _connect(
    settings: SessionSettings,
    *,
    dialer: Dialer,
    transcript: Transcript,
    observer: SessionObserver | None,
) -> SmtpWire:
    host, port = settings.host, settings.port
    transcript.note(f"connecting to {host}:{port} (security {settings.security})")
    with _step(observer, StepName.CONNECT):
        sock = await _dial(settings, dialer=dialer, transcript=transcript)
    peer = sock.getpeername()
    implicit = settings.security is Security.TLS
    with _step(observer, StepName.TLS) if implicit else contextlib.nullcontext():
        wire = await _transport(settings, sock, transcript=transcript)
    transcript.note(f"connected to {peer[0]}:{peer[1]}")
    if implicit:
        transcript.tls_version = wire.tls_version()
        transcript.note(f"TLS established ({transcript.tls_version})")
        _secured(wire, observer)
    return wire


def _secured(wire: SmtpWire, observer: SessionObserver | None) -> None:
    ssl_object = wire.ssl_object()
    if observer is not None and ssl_object is not None:
        observer.secured(ssl_object)


async def _dial(
    settings: SessionSettings, *, dialer: Dialer, transcript: Transcript
) -> socket.socket:
    host, port = settings.host, settings.port
    try:
        return await dialer.connect(host, port, timeout=settings.connect_timeout)
    except PolicyViolation as exc:
        transcript.note(f"refused by the network policy: {exc}")
        raise SmtpError.from_failure(Failure.POLICY, str(exc), phase=Phase.CONNECT) from exc
    except TimeoutError as exc:
        message = f"timed out connecting to {host}:{port} after {settings.connect_timeout:g} s"
        transcript.note(message)
        raise SmtpError.from_failure(Failure.TIMEOUT, message, phase=Phase.CONNECT) from exc
    except OSError as exc:
        message = f"could not connect to {host}:{port}: {exc.strerror or exc}"
        transcript.note(message)
        raise SmtpError.from_failure(
            Failure.CONNECTION_FAILED, message, phase=Phase.CONNECT
        ) from exc


async def _transport(
    settings: SessionSettings, sock: socket.socket, *, transcript: Transcript
) -> SmtpWire:
    host, port = settings.host, settings.port
    implicit = settings.security is Security.TLS
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(settings.connect_timeout):
            _, wire = await loop.create_connection(
                SmtpWire,
                sock=sock,
                ssl=settings.tls_context if implicit else None,
                # The connection is pinned to the checked address; TLS still verifies the
                # configured host name (SPEC section 8).
                server_hostname=host if implicit else None,
                ssl_handshake_timeout=settings.connect_timeout if implicit else None,
            )
    except (ssl.SSLError, ssl.CertificateError) as exc:
        _close_quietly(sock)
        raise _tls_error(exc, settings, transcript, Phase.CONNECT) from exc
    except (TimeoutError, OSError) as exc:
        _close_quietly(sock)
        message = f"TLS handshake with {host}:{port} did not complete: {exc or 'timed out'}"
        transcript.note(message)
        raise SmtpError.from_failure(Failure.TLS, message, phase=Phase.CONNECT) from exc
    return wire


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _tls_error(
    exc: BaseException, settings: SessionSettings, transcript: Transcript, phase: Phase
) -> SmtpError:
    message = describe_tls_error(exc, host=settings.host, min_version=settings.min_tls_version)
    transcript.note(message)
    return SmtpError.from_failure(Failure.TLS, message, phase=phase)


def parse_extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) to their parameters (RFC 5321 section 4.1.1.1).

    The first line is the server's name, not an extension. Servers written before RFC 4954
    announce ``AUTH=PLAIN LOGIN`` (often next to ``AUTH PLAIN LOGIN``); both forms count
    as ``AUTH`` and their mechanisms are merged, in the order announced.
    """
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        words = line.split()
        if not words:
            continue
        keyword, equals, first = words[0].upper().partition("=")
        if keyword != "AUTH" or not equals:
            first = ""
        params = " ".join(([first] if first else []) + words[1:])
        if keyword == "AUTH" and keyword in extensions:
            params = f"{extensions[keyword]} {params}".strip()
        extensions[keyword] = params
    return extensions


def _no_mechanism(host: str, wanted: str, offered: set[str]) -> SmtpError:
    listed = ", ".join(sorted(offered)) or "none"
    return SmtpError.local(
        f"{host} offers no usable AUTH mechanism (wanted {wanted}; offered: {listed})",
        phase=Phase.AUTH,
        kind=OutcomeKind.AUTH_FAILED,
        refusal=Refusal.NO_MECHANISM,
    )


async def _access_token(tokens: TokenSource | None, host: str) -> str:
    if tokens is None:
        raise SmtpError.local(
            "XOAUTH2 is configured but no token source is available",
            phase=Phase.AUTH,
            kind=OutcomeKind.AUTH_FAILED,
            refusal=Refusal.TOKEN_UNAVAILABLE,
        )
    try:
        return (await tokens.access_token()).reveal()
    except ConfigurationError as exc:
        raise SmtpError.local(
            f"the OAuth provider refused the credentials for {host}: {exc}",
            phase=Phase.AUTH,
            kind=OutcomeKind.AUTH_FAILED,
            refusal=Refusal.TOKEN_UNAVAILABLE,
        ) from exc
    except (OSError, TimeoutError) as exc:
        error = SmtpError.from_failure(
            Failure.CONNECTION_FAILED,
            f"could not obtain an OAuth access token: {exc}",
            phase=Phase.AUTH,
        )
        error.refusal = Refusal.TOKEN_UNAVAILABLE
        raise error from exc
