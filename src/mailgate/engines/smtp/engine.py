"""The SMTP engine: delivers through one configured server, over pooled sessions.

Steps of :meth:`SmtpEngine.deliver`: take a session from the pool (opening one connects
through the injected dialer, does TLS, EHLO, STARTTLS and AUTH), run one transaction, give
the session back (or drop it after any error), and turn what happened into a
:class:`~mailgate.domain.delivery.DeliveryResult` with a redacted transcript.

Every reply text of the result (the message's and each recipient's) is redacted like the
transcript: a server echoing the password, a token or an AUTH payload does not get it
stored, shown or sent in a webhook.

The module's logger (``mailgate.engines.smtp.engine``) records one DEBUG line per attempt:
server, outcome and reply code. It never logs commands, replies, credentials or content.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from mailgate.domain.delivery import DeliveryResult, Envelope, OutcomeKind, RecipientResult
from mailgate.domain.outcomes import remote_id, summarise
from mailgate.domain.servers import AuthKind
from mailgate.engines.base import Clock, TokenSource
from mailgate.engines.config import ServerConfig
from mailgate.engines.probe_report import ProbeReport
from mailgate.engines.smtp.diagnose import SmtpError
from mailgate.engines.smtp.pool import SessionPool
from mailgate.engines.smtp.probe import probe_smtp
from mailgate.engines.smtp.session import SmtpSession
from mailgate.engines.smtp.settings import SessionSettings
from mailgate.engines.smtp.transaction import Plan, Transaction, plan_ahead, transact
from mailgate.engines.smtp.transcript import Transcript
from mailgate.errors import ConfigurationError
from mailgate.net.dialer import Dialer

logger = logging.getLogger(__name__)


class SmtpEngine:
    """Delivers messages through the SMTP server of ``config``.

    Raises :class:`~mailgate.errors.ConfigurationError` at construction when the settings
    cannot work (unknown option value, password auth over an unencrypted connection,
    XOAUTH2 without a token source...). :meth:`deliver` never raises for an outcome.
    """

    def __init__(
        self, config: ServerConfig, *, dialer: Dialer, tokens: TokenSource | None = None
    ) -> None:
        self.config = config
        self.settings = SessionSettings.from_config(config)
        if self.settings.auth is AuthKind.XOAUTH2 and tokens is None:
            raise ConfigurationError(
                f"server {config.key}: XOAUTH2 needs an OAuth token source, none was given"
            )
        self._dialer = dialer
        self._tokens = tokens
        self._secrets = (config.password.reveal(),) if config.password else ()
        self._pool = SessionPool(self._open, size=config.max_connections)

    @property
    def connections_opened(self) -> int:
        """How many connections this engine has opened so far (for tests and metrics)."""
        return self._pool.opened

    @property
    def envelopes_pipelined(self) -> int:
        """How many envelopes went out behind a previous message's content (one write for
        both); see :mod:`mailgate.engines.smtp.pool`."""
        return self._pool.pipelined

    async def deliver(self, envelope: Envelope, data: bytes, /) -> DeliveryResult:
        """Attempt delivery of ``data`` to every recipient of ``envelope`` once."""
        started = time.perf_counter()
        transcript = Transcript(secrets=self._secrets)
        if not envelope.rcpt_to:
            raise ValueError("an envelope needs at least one recipient")
        plans: dict[SmtpSession, Plan] = {}

        def prepare(session: SmtpSession) -> bytes | None:
            # Called by the delivery ahead of this one on ``session``, when it is about to
            # write its content: this envelope goes out in the same write.
            plan = plan_ahead(session, envelope, data)
            if plan is None:
                return None
            plans[session] = plan
            return plan.envelope

        for attempt in (1, 2):
            try:
                session, reused = await self._pool.acquire(transcript, prepare)
            except SmtpError as exc:
                return self._failed(envelope, exc, transcript, started)
            reusable = False
            try:
                tx = await transact(
                    session,
                    envelope,
                    data,
                    transcript=transcript,
                    plan=plans.pop(session, None),
                    follow=self._pool.follow,
                    hold=self._pool.hold,
                )
                reusable = tx.reusable
            finally:
                self._pool.release(session, reusable=reusable)
            if reused and attempt == 1 and tx.stale_connection:
                # The server closed the idle connection (or announced 421) before this
                # transaction began; nothing was accepted, so a fresh connection is safe.
                transcript.note("the reused connection was gone; retrying on a new one")
                continue
            return self._result(tx, session, transcript, started)
        raise AssertionError("unreachable")  # pragma: no cover

    async def probe(self, *, clock: Clock = time.perf_counter) -> ProbeReport:
        """Open a session as :meth:`deliver` does (outside the pool), report it, QUIT."""
        return await probe_smtp(self.config, dialer=self._dialer, tokens=self._tokens, clock=clock)

    async def aclose(self) -> None:
        """QUIT and close every idle connection; in-flight deliveries finish first."""
        await self._pool.aclose()

    async def _open(self, transcript: Transcript) -> SmtpSession:
        return await SmtpSession.open(
            self.settings, dialer=self._dialer, transcript=transcript, tokens=self._tokens
        )

    def _result(
        self, tx: Transaction, session: SmtpSession, transcript: Transcript, started: float
    ) -> DeliveryResult:
        # A server may echo what it was sent (an AUTH payload): no reply text is kept with
        # a secret in it, as in the transcript.
        recipients = tuple(_redacted(r, transcript) for r in tx.recipients)
        kind = summarise(r.kind for r in recipients)
        lead = _first_of_kind(recipients, kind)
        error = tx.error
        details = {"phase": str(error.phase)} if error is not None else {}
        final = tx.final_reply
        result = DeliveryResult(
            kind=kind,
            recipients=recipients,
            code=lead.code,
            reply=lead.reply,
            retry_after=tx.retry_after,
            tls_version=transcript.tls_version,
            transcript=transcript.render(),
            remote_id=remote_id(final.text) if final and kind is OutcomeKind.SENT else None,
            connection_error=error is not None and error.outcome.connection_error,
            duration_ms=(time.perf_counter() - started) * 1000,
            details=details,
        )
        self._log(result)
        return result

    def _failed(
        self, envelope: Envelope, exc: SmtpError, transcript: Transcript, started: float
    ) -> DeliveryResult:
        """The session could not be opened: every recipient shares the outcome."""
        result = DeliveryResult.whole(
            envelope,
            exc.outcome.kind,
            code=exc.code,
            reply=transcript.redact(exc.message),
            retry_after=exc.outcome.retry_after,
            tls_version=transcript.tls_version,
            transcript=transcript.render(),
            connection_error=exc.outcome.connection_error,
            duration_ms=(time.perf_counter() - started) * 1000,
            details={"phase": str(exc.phase)},
        )
        self._log(result)
        return result

    def _log(self, result: DeliveryResult) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "smtp delivery via %s: %s (code %s, %.1f ms)",
                self.config.key,
                result.kind,
                result.code,
                result.duration_ms,
            )


def _redacted(recipient: RecipientResult, transcript: Transcript) -> RecipientResult:
    reply = transcript.redact(recipient.reply)
    return recipient if reply == recipient.reply else dataclasses.replace(recipient, reply=reply)


def _first_of_kind(recipients: tuple[RecipientResult, ...], kind: OutcomeKind) -> RecipientResult:
    return next(r for r in recipients if r.kind is kind)
