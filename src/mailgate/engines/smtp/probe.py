"""Test connection over SMTP (SPEC.md section 5): the delivery session, watched, then QUIT.

:func:`probe_smtp` opens the very session delivery opens (:class:`SmtpSession`: the same
dialer, TLS settings, EHLO parser, SASL exchange and errors) with an observer that records
each step's name, result and time, the banner and the TLS session. Once the session is
ready for MAIL it says QUIT: a probe never starts a mail transaction.

The session's :class:`~mailgate.engines.smtp.diagnose.SmtpError` is turned into the
report's error code here; a few failures get one more look to name their cause (a silent
port that completes a TLS handshake expects implicit TLS; a TLS 1.3 handshake that fails
against a server that completes TLS 1.2). Those diagnostic handshakes send nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

from mailgate.domain.outcomes import Failure, Phase
from mailgate.domain.servers import AuthKind, Security, TlsVersion
from mailgate.engines.base import TokenSource
from mailgate.engines.config import ServerConfig
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
from mailgate.engines.smtp.diagnose import Refusal, SmtpError
from mailgate.engines.smtp.session import SmtpSession
from mailgate.engines.smtp.settings import SessionSettings
from mailgate.engines.smtp.transcript import Transcript
from mailgate.engines.smtp.wire import ProtocolError
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

__all__ = [
    "SECURITY",
    "WARN_INSECURE_AUTH",
    "WARN_NO_QUIT",
    "WARN_PLAINTEXT",
    "WARN_UNVERIFIED",
    "Clock",
    "probe_smtp",
]

Clock = Callable[[], float]

SECURITY = {
    Security.NONE: ProbeSecurity.INSECURE,
    Security.TLS: ProbeSecurity.SMTPS,
    Security.STARTTLS: ProbeSecurity.STARTTLS,
}

WARN_UNVERIFIED = (
    "Certificate verification is off: the connection is encrypted, but the server's "
    "identity is not checked, so another server could impersonate it."
)
WARN_PLAINTEXT = "The connection is not encrypted (security: none)."
WARN_INSECURE_AUTH = "Credentials were sent without TLS because the server allows insecure auth."
WARN_NO_QUIT = "The server did not acknowledge QUIT."

_REFUSALS = {
    Refusal.STARTTLS_NOT_OFFERED: ProbeErrorCode.STARTTLS_NOT_OFFERED,
    Refusal.INSECURE_AUTH: ProbeErrorCode.INSECURE_AUTH_REFUSED,
    Refusal.NO_MECHANISM: ProbeErrorCode.AUTH_NOT_OFFERED,
    Refusal.TOKEN_UNAVAILABLE: ProbeErrorCode.OAUTH_TOKEN_FAILED,
}


async def probe_smtp(
    config: ServerConfig,
    *,
    dialer: Dialer,
    tokens: TokenSource | None = None,
    clock: Clock = time.perf_counter,
) -> ProbeReport:
    """Test ``config`` without sending mail and report every step; never raises for a failure.

    Settings that delivery refuses at once are ``invalid_configuration`` with no step, except
    password auth over plain text, which the session refuses at AUTH as in delivery
    (``insecure_auth_refused``), after showing what the server offers.
    """
    security = SECURITY[config.security]
    try:
        settings = SessionSettings.from_config(config, refuse_insecure_auth=False)
    except ConfigurationError as exc:
        error = make_error(ProbeErrorCode.INVALID_CONFIGURATION, str(exc), config)
        return ProbeReport(security=security, steps=(), error=error)
    return await _SmtpProbe(config, settings, dialer=dialer, tokens=tokens, clock=clock).run()


class _SmtpProbe:
    """One probe run; it is the session's observer (``started``/``finished``/...)."""

    def __init__(
        self,
        config: ServerConfig,
        settings: SessionSettings,
        *,
        dialer: Dialer,
        tokens: TokenSource | None,
        clock: Clock,
    ) -> None:
        self.config = config
        self.settings = settings
        self.dialer = dialer
        self.tokens = tokens
        self.clock = clock
        self.transcript = Transcript(secrets=(config.password.reveal(),) if config.password else ())
        self.steps: list[ProbeStep] = []
        self.warnings: list[str] = []
        self.banner: str | None = None
        self.tls: TlsInfo | None = None
        self.failed_step: StepName = StepName.CONNECT
        self._started: dict[StepName, float] = {}

    # -- SessionObserver -------------------------------------------------------------------

    def started(self, step: StepName) -> None:
        self._started[step] = self.clock()

    def finished(self, step: StepName, *, ok: bool) -> None:
        elapsed = max(self.clock() - self._started.pop(step, self.clock()), 0.0)
        self.steps.append(ProbeStep(step, ok, round(elapsed * 1000, 1)))
        if not ok:
            self.failed_step = step

    def greeted(self, banner: str) -> None:
        self.banner = banner

    def secured(self, ssl_object: ssl.SSLObject) -> None:
        cipher = ssl_object.cipher()
        verified = self.config.verify_certificate
        self.tls = TlsInfo(
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            certificate=certificate_info(ssl_object, verified=verified),
        )
        if not verified:
            self.warnings.append(WARN_UNVERIFIED)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> ProbeReport:
        if self.config.security is Security.NONE:
            self.warnings.append(WARN_PLAINTEXT)
        error: ProbeError | None = None
        session: SmtpSession | None = None
        authenticated = False
        try:
            session = await SmtpSession.connect(
                self.settings, dialer=self.dialer, transcript=self.transcript, observer=self
            )
            await session.handshake(self.transcript, self.tokens)
            authenticated = self.settings.auth is not AuthKind.NONE
            if authenticated and self.tls is None:
                self.warnings.append(WARN_INSECURE_AUTH)
            await self._quit(session)
        except SmtpError as exc:
            error = await self._diagnose(exc, session)
            if session is not None:
                if exc.code is not None or exc.refusal is not None:
                    await session.quit(timeout=min(self.settings.command_timeout, 2.0))
                else:
                    session.abort()
        except BaseException:
            if session is not None:
                session.abort()
            raise
        finally:
            if session is not None:
                await session.wire.wait_closed(timeout=1.0)
        return ProbeReport(
            security=SECURITY[self.config.security],
            steps=tuple(self.steps),
            tls=self.tls,
            server=self._server_info(session),
            authenticated=authenticated,
            error=error,
            warnings=tuple(dict.fromkeys(self.warnings)),
        )

    async def _quit(self, session: SmtpSession) -> None:
        self.started(StepName.QUIT)
        ok = await session.quit(timeout=self.settings.command_timeout)
        self.finished(StepName.QUIT, ok=ok)
        if not ok:
            self.warnings.append(WARN_NO_QUIT)

    def _server_info(self, session: SmtpSession | None) -> ServerInfo | None:
        if self.banner is None or session is None:
            return None
        return ServerInfo(
            banner=self.banner,
            extensions=tuple(session.extensions),
            auth_mechanisms=session.auth_mechanisms,
        )

    # -- what went wrong -------------------------------------------------------------------

    async def _diagnose(self, exc: SmtpError, session: SmtpSession | None) -> ProbeError:
        error = await self._classify(exc, session)
        # Servers may echo what they were sent; the report shows none of it.
        return ProbeError(error.code, self.transcript.redact(error.message), error.hint)

    async def _classify(self, exc: SmtpError, session: SmtpSession | None) -> ProbeError:
        config, step = self.config, self.failed_step
        if exc.refusal is not None:
            return make_error(_REFUSALS[exc.refusal], _sentence(exc.message), config)
        if exc.code is not None:
            return self._refused_by_server(exc, session)
        cause = exc.__cause__
        if (
            exc.failure is Failure.TIMEOUT
            and exc.phase is Phase.GREETING
            and config.security is not Security.TLS
            and await self._handshake_succeeds()
        ):
            return make_error(
                ProbeErrorCode.STARTTLS_ON_TLS_PORT,
                f"No SMTP greeting within {self.settings.greeting_timeout:g} s, but port "
                f"{config.port} completes a TLS handshake: it expects implicit TLS.",
                config,
            )
        if (
            isinstance(cause, ssl.SSLError | ConnectionError)
            and not isinstance(cause, ssl.SSLCertVerificationError)
            and step is StepName.TLS
            and config.min_tls_version is TlsVersion.V1_3
            and await self._handshake_succeeds(maximum_version=ssl.TLSVersion.TLSv1_2)
        ):
            return make_error(
                ProbeErrorCode.TLS_VERSION_TOO_LOW,
                "The server speaks TLS 1.2 at most; this server requires TLS 1.3.",
                config,
            )
        if isinstance(cause, ProtocolError):
            if cause.looks_like_tls:
                return make_error(
                    ProbeErrorCode.STARTTLS_ON_TLS_PORT,
                    f"The server on port {config.port} answered with TLS, not with an SMTP "
                    "greeting.",
                    config,
                )
            return make_error(ProbeErrorCode.PROTOCOL_ERROR, f"Not SMTP: {cause}.", config)
        if cause is not None:
            with contextlib.suppress(Exception):  # not a network failure: reported below
                return classify(cause, step, config)
        return make_error(ProbeErrorCode.PROTOCOL_ERROR, _sentence(exc.message), config)

    def _refused_by_server(self, exc: SmtpError, session: SmtpSession | None) -> ProbeError:
        reply = f"{exc.code} {exc.message}".strip()
        config = self.config
        if exc.phase is Phase.GREETING:
            return make_error(ProbeErrorCode.SERVER_REJECTED, f"The server said: {reply}", config)
        if exc.phase is Phase.STARTTLS:
            return make_error(
                ProbeErrorCode.STARTTLS_FAILED, f"STARTTLS was refused: {reply}", config
            )
        if exc.phase is Phase.AUTH:
            mechanism = session.mechanism if session is not None else None
            what = f"AUTH {mechanism or ''}".rstrip()
            code = exc.code or 0
            if 500 <= code < 600:
                return make_error(
                    ProbeErrorCode.AUTH_FAILED, f"{what} was rejected: {reply}", config
                )
            if 400 <= code < 500:
                return make_error(
                    ProbeErrorCode.AUTH_TEMPORARY_FAILURE, f"{what} failed: {reply}", config
                )
            return make_error(
                ProbeErrorCode.PROTOCOL_ERROR, f"Unexpected reply to AUTH: {exc.code}", config
            )
        return make_error(ProbeErrorCode.SERVER_REJECTED, f"EHLO was refused: {reply}", config)

    async def _handshake_succeeds(self, *, maximum_version: ssl.TLSVersion | None = None) -> bool:
        """Whether a fresh connection completes an implicit TLS handshake (diagnosis only).

        Nothing is verified and nothing is sent after the handshake.
        """
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if maximum_version is not None:
            context.maximum_version = maximum_version
        timeout = self.settings.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                sock = await self.dialer.connect(
                    self.config.host, self.config.port, timeout=timeout
                )
                _, writer = await asyncio.open_connection(
                    sock=sock,
                    ssl=context,
                    server_hostname=self.config.host,
                    ssl_handshake_timeout=timeout + 1,
                )
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        writer.close()
        try:
            async with asyncio.timeout(1):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            writer.transport.abort()  # no close_notify in time: drop the connection
        return True


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else f"{message}."
