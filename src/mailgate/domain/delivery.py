"""Delivery values shared by engines, the worker and the delivery log.

Engines return these; they never raise for a delivery outcome (ARCHITECTURE.md, house style 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED})


class RecipientStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    #: Accepted by the remote server, then reported undeliverable by a delivery-status
    #: notification found in an account's IMAP inbox (set by inbound sync, never by a worker).
    BOUNCED = "bounced"
    #: Left out at acceptance: the address is on the suppression list (never attempted).
    SUPPRESSED = "suppressed"
    #: Reported delivered by the provider (an HTTP engine's event webhook).
    DELIVERED = "delivered"
    #: The recipient reported the message as spam (ARF report or provider event).
    COMPLAINED = "complained"


#: Recipient states that count as delivered for the display status of a message.
_DELIVERED = frozenset(
    {RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.COMPLAINED}
)
#: Recipient states that count as not delivered.
_LOST = frozenset({RecipientStatus.FAILED, RecipientStatus.BOUNCED, RecipientStatus.SUPPRESSED})


def display_status(status: str, recipients: list[str]) -> str:
    """What the Email Logs show for a message: its ``status``, told apart by its recipients.

    A sent or failed message whose recipients did not all get it is ``partially sent`` (some
    did), ``bounced`` (none did and one bounced) or ``failed`` (none did). Other statuses
    (queued, sending, deferred, cancelled) are shown as they are.
    """
    if status not in (MessageStatus.SENT.value, MessageStatus.FAILED.value) or not recipients:
        return status
    states = [RecipientStatus(r) for r in recipients]
    delivered = sum(1 for r in states if r in _DELIVERED)
    lost = sum(1 for r in states if r in _LOST)
    if delivered and lost:
        return "partially sent"
    if lost and not delivered:
        return "bounced" if RecipientStatus.BOUNCED in states else MessageStatus.FAILED.value
    return status


class OutcomeKind(StrEnum):
    """What one attempt means for a recipient or a whole message."""

    SENT = "sent"
    DEFERRED = "deferred"  # temporary: retry later
    FAILED = "failed"  # permanent for this recipient
    AUTH_FAILED = "auth_failed"  # the server's credentials are wrong: hold, do not burn retries
    UNKNOWN = "unknown"  # the data may have been accepted: retry, flag possible duplicate


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class Envelope:
    """The SMTP envelope: reverse path and forward paths (already routed)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    smtputf8: bool = False


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class RecipientResult:
    """The outcome of one attempt for one envelope recipient."""

    email: str
    kind: OutcomeKind
    code: int | None = None
    reply: str = ""


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class DeliveryResult:
    """The outcome of one delivery attempt of one message.

    ``kind`` is the outcome of the message as a whole for this attempt; ``recipients`` holds
    one entry per envelope recipient. ``retry_after`` (seconds) is set when the remote side
    said when to come back. ``connection_error`` marks failures of the connection itself
    (refused, TLS, timeout) that make a fallback server worth trying.
    """

    kind: OutcomeKind
    recipients: tuple[RecipientResult, ...] = ()
    code: int | None = None
    reply: str = ""
    retry_after: float | None = None
    tls_version: str | None = None
    transcript: str = ""
    remote_id: str | None = None
    connection_error: bool = False
    duration_ms: float = 0.0
    details: dict[str, str] = field(default_factory=dict)

    @classmethod
    def whole(
        cls,
        envelope: Envelope,
        kind: OutcomeKind,
        *,
        code: int | None = None,
        reply: str = "",
        **extra: object,
    ) -> DeliveryResult:
        """A result where every recipient shares the message's outcome."""
        recipients = tuple(RecipientResult(r, kind, code, reply) for r in envelope.rcpt_to)
        return cls(kind=kind, recipients=recipients, code=code, reply=reply, **extra)  # type: ignore[arg-type]
