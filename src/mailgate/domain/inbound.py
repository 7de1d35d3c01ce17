"""Inbound mail: what a sync needs, what it fetches, what a bounce says and what a sync did.

Plain values shared by the IMAP fetcher (``mailgate.inbound``), which produces them, and
storage, which records them. No IO. A message is identified in its mailbox by
``(mailbox, uidvalidity, uid)`` (RFC 9051 section 2.3.1.1): a UID means nothing without the
UIDVALIDITY it was issued under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ImapSecurity(StrEnum):
    TLS = "tls"  # implicit TLS, port 993 (RFC 8314)
    STARTTLS = "starttls"  # plain connect, then STARTTLS is mandatory (RFC 9051 section 6.2.1)


class ImapAuth(StrEnum):
    PASSWORD = "password"  # noqa: S105 - LOGIN with the account's IMAP password
    XOAUTH2 = "xoauth2"  # AUTHENTICATE XOAUTH2 with an OAuth 2.0 access token


@dataclass(frozen=True, slots=True)
class ImapOAuth:
    """Where an inbox's access tokens come from: the same providers as the SMTP engine's
    XOAUTH2 (Google JWT bearer with a service account, Microsoft client credentials).
    Secrets are kept out of reprs."""

    provider: str  # "google" | "microsoft"
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tenant_id: str | None = None
    scope: str | None = None
    token_url: str | None = None
    service_account_json: str = field(default="", repr=False)
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class ImapTarget:
    """Everything one sync needs to reach one account's inbox; the password is kept out of
    reprs and never leaves the process.

    ``ca_certificates`` (PEM) are trusted for this inbox only, besides the system store.
    """

    host: str
    port: int
    security: ImapSecurity
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    auth: ImapAuth = ImapAuth.PASSWORD
    oauth: ImapOAuth | None = None
    ca_certificates: str | None = None

    def secrets(self) -> tuple[str, ...]:
        """Every secret of the target (to scrub from any text shown to people)."""
        values = [self.password]
        if self.oauth is not None:
            values += [self.oauth.client_secret, self.oauth.service_account_json]
        return tuple(v for v in values if v)


#: The account secrets (sealed apart from the plain ``imap`` settings) an inbox uses.
IMAP_SECRETS = ("imap_password", "imap_oauth_client_secret", "imap_oauth_service_account_json")


def imap_target(
    address: str, imap: Mapping[str, Any] | None, secrets: Mapping[str, str]
) -> ImapTarget | None:
    """The inbox of an account from its stored ``imap`` settings and opened secrets; None
    when it has no inbox. The username defaults to the account's address."""
    if not imap or not imap.get("host"):
        return None
    oauth: ImapOAuth | None = None
    raw = imap.get("oauth")
    if isinstance(raw, Mapping) and raw.get("provider"):
        oauth = ImapOAuth(
            provider=str(raw["provider"]),
            client_id=str(raw.get("client_id") or ""),
            client_secret=secrets.get("imap_oauth_client_secret", ""),
            tenant_id=raw.get("tenant_id") or None,
            scope=raw.get("scope") or None,
            token_url=raw.get("token_url") or None,
            service_account_json=secrets.get("imap_oauth_service_account_json", ""),
            subject=raw.get("subject") or None,
        )
    return ImapTarget(
        host=str(imap["host"]),
        port=int(imap.get("port") or 993),
        security=ImapSecurity(imap.get("security") or "tls"),
        username=str(imap.get("username") or address),
        password=secrets.get("imap_password", ""),
        folder=str(imap.get("folder") or "INBOX"),
        auth=ImapAuth(imap.get("auth") or "password"),
        oauth=oauth,
        ca_certificates=imap.get("ca_certificates") or None,
    )


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
