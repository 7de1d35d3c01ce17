"""Inbound mail: what a sync needs, what it fetches, what a bounce says and what a sync did.

Plain values shared by the IMAP fetcher (``mailgate.inbound``), which produces them, and
storage, which records them. No IO. A message is identified in its mailbox by
``(mailbox, uidvalidity, uid)`` (RFC 9051 section 2.3.1.1): a UID means nothing without the
UIDVALIDITY it was issued under.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ImapSecurity(StrEnum):
    TLS = "tls"  # implicit TLS, port 993 (RFC 8314)
    STARTTLS = "starttls"  # plain connect, then STARTTLS is mandatory (RFC 9051 section 6.2.1)


@dataclass(frozen=True, slots=True)
class ImapTarget:
    """Everything one sync needs to reach one account's inbox; the password is kept out of
    reprs and never leaves the process."""

    host: str
    port: int
    security: ImapSecurity
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"


@dataclass(frozen=True, slots=True)
class MailboxCursor:
    """How far a mailbox has been read: every UID up to ``last_uid`` under ``uidvalidity``."""

    mailbox: str
    uidvalidity: int
    last_uid: int


class BounceAction(StrEnum):
    """The ``Action`` of one recipient in a delivery-status notification (RFC 3464 2.3.3)."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


class BounceFormat(StrEnum):
    DSN = "dsn"  # multipart/report; report-type=delivery-status (RFC 3464)
    QUOTED = "quoted"  # a non-standard bounce that quotes the original headers


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient a bounce reports on.

    ``status`` is the RFC 3463 enhanced code (``5.1.1``); ``code`` the SMTP reply code found
    in the diagnostic (``550``), when there is one.
    """

    email: str
    action: BounceAction
    status: str | None = None
    code: int | None = None
    diagnostic: str | None = None

    @property
    def is_failure(self) -> bool:
        """A permanent failure: the recipient will not get the message."""
        if self.action is not BounceAction.FAILED:
            return False
        return self.status is None or not self.status.startswith("4")


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a bounce says about the message it returns."""

    format: BounceFormat
    original_message_id: str | None
    recipients: tuple[BouncedRecipient, ...]
    reporting_mta: str | None = None


@dataclass(frozen=True, slots=True)
class Complaint:
    """What an ARF feedback report (RFC 5965) says about the message it returns.

    ``recipients`` are the complaining addresses the report names (``Original-Rcpt-To``,
    else the To and Cc of the returned header); many mailbox providers redact them, so
    the store also accepts a message with a single recipient as the complainer.
    """

    feedback_type: str
    original_message_id: str | None
    recipients: tuple[str, ...] = ()
    user_agent: str | None = None
    reporting_mta: str | None = None
    source_ip: str | None = None

    @property
    def is_complaint(self) -> bool:
        """Whether the report is a complaint (``abuse``, ``fraud``), not ``not-spam`` etc."""
        return self.feedback_type in COMPLAINT_FEEDBACK_TYPES


#: Feedback types (RFC 5965 section 7.3) that make a complaint and a suppression.
COMPLAINT_FEEDBACK_TYPES = frozenset({"abuse", "fraud"})


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message fetched from a mailbox; ``raw`` holds only the header when ``truncated``."""

    uid: int
    message_id: str | None
    sender: str
    subject: str
    date: datetime | None
    received_at: datetime | None
    size: int
    raw: bytes = field(repr=False)
    truncated: bool = False
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    #: The header fields, decoded and flattened (for ``message.received`` events).
    headers: tuple[tuple[str, str], ...] = ()
    in_reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class InboundBatch:
    """Messages fetched in one go and the cursor to save with them (in one transaction).

    ``uidvalidity_changed`` says the server renumbered the mailbox since the last sync: the
    mailbox is read again from the start, and messages already stored under an older
    UIDVALIDITY (same Message-ID) are not stored a second time.
    """

    cursor: MailboxCursor
    messages: tuple[InboundMessage, ...]
    uidvalidity_changed: bool = False


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What recording one batch did."""

    stored: int = 0
    duplicates: int = 0
    bounces: int = 0
    bounced_recipients: int = 0
    complaints: int = 0


@dataclass(frozen=True, slots=True)
class SyncCounts:
    """What one sync of one account did (the answer of a manual sync)."""

    mailbox: str
    uidvalidity: int
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    bounces: int = 0
    bounced_recipients: int = 0
    uidvalidity_changed: bool = False
    complaints: int = 0

    def plus(self, result: BatchResult, *, fetched: int) -> SyncCounts:
        return SyncCounts(
            mailbox=self.mailbox,
            uidvalidity=self.uidvalidity,
            fetched=self.fetched + fetched,
            stored=self.stored + result.stored,
            duplicates=self.duplicates + result.duplicates,
            bounces=self.bounces + result.bounces,
            bounced_recipients=self.bounced_recipients + result.bounced_recipients,
            uidvalidity_changed=self.uidvalidity_changed,
            complaints=self.complaints + result.complaints,
        )


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One stored inbound message as the inbox lists it (without its bytes); ``bounce``
    is what the bounce said and which recipients it changed."""

    id: str
    mailbox: str
    uidvalidity: int
    uid: int
    message_id: str | None
    sender: str
    subject: str
    date: datetime | None
    received_at: datetime | None
    size: int
    truncated: bool
    is_bounce: bool
    bounce: dict[str, Any] | None
    matched_message_id: str | None
    created_at: datetime
    #: What an ARF feedback report said and which recipients it changed.
    complaint: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DueAccount:
    """An account whose inbox the scheduler should read now."""

    tenant_id: str
    account_id: str
