"""How an SMTP step failed, in words a person can act on, with its classified outcome.

:class:`SmtpError` is internal to the SMTP engine: sessions raise it, the engine turns it
into a :class:`~mailgate.domain.delivery.DeliveryResult` and never lets it escape.
"""

from __future__ import annotations

from enum import StrEnum

from mailgate.domain.delivery import OutcomeKind
from mailgate.domain.outcomes import Failure, Outcome, Phase, classify_failure, classify_reply
from mailgate.engines.smtp.wire import Reply

#: Phases whose failure is the server's or the connection's, not the message's: their
#: outcomes make a fallback server worth trying.
CONNECTION_PHASES = frozenset({Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.STARTTLS})


class Refusal(StrEnum):
    """Why Mailgate itself stopped a session, for callers that explain it (the probe)."""

    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    INSECURE_AUTH = "insecure_auth"
    NO_MECHANISM = "no_mechanism"
    TOKEN_UNAVAILABLE = "token_unavailable"  # noqa: S105 - a reason, not a secret


class SmtpError(Exception):
    """One step of the dialogue failed; ``outcome`` says what it means for the message."""

    def __init__(
        self,
        message: str,
        *,
        phase: Phase,
        outcome: Outcome,
        code: int | None = None,
        failure: Failure | None = None,
        sent_nothing: bool = False,
        refusal: Refusal | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase
        self.outcome = outcome
        self.code = code
        self.failure = failure
        #: True when the error was decided locally before any transaction command was sent
        #: (the connection is still clean and may be reused).
        self.sent_nothing = sent_nothing
        #: Set when Mailgate refused to go on (``local``), saying why.
        self.refusal = refusal

    @classmethod
    def from_reply(cls, reply: Reply, *, phase: Phase, what: str = "") -> SmtpError:
        """The server refused a step with ``reply``."""
        outcome = classify_reply(reply.code, reply.text, phase=phase)
        if phase in CONNECTION_PHASES and not outcome.connection_error:
            outcome = Outcome(outcome.kind, connection_error=True, retry_after=outcome.retry_after)
        text = reply.text or (f"{what} refused" if what else "refused")
        return cls(text, phase=phase, outcome=outcome, code=reply.code)

    @classmethod
    def from_failure(cls, failure: Failure, message: str, *, phase: Phase) -> SmtpError:
        """The connection failed (``failure``) during ``phase``."""
        outcome = classify_failure(failure, phase=phase)
        return cls(message, phase=phase, outcome=outcome, failure=failure)

    @classmethod
    def local(
        cls,
        message: str,
        *,
        phase: Phase,
        kind: OutcomeKind,
        connection_error: bool = False,
        refusal: Refusal | None = None,
    ) -> SmtpError:
        """Mailgate itself refuses to go on (no STARTTLS, message too large, ...)."""
        outcome = Outcome(kind, connection_error=connection_error)
        return cls(message, phase=phase, outcome=outcome, sent_nothing=True, refusal=refusal)
