"""What the durable queue stores and hands out, and the :class:`Queue` protocol.

The values (a new message, a claimed job, an attempt's completion) are shared by every
implementation; :mod:`mailgate.storage.queue_sqlite` and :mod:`mailgate.storage.queue_postgres`
implement the protocol, and :func:`mailgate.storage.queue.queue_for` picks one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.storage.base import Tx

if TYPE_CHECKING:
    from pathlib import Path

    from mailgate.storage.db import Database

ACTIVE_RECIPIENT = (RecipientStatus.PENDING.value, RecipientStatus.DEFERRED.value)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A composed, routed message ready to be committed to the queue."""

    id: str
    tenant_id: str
    app_id: str | None
    stage: str | None
    account_id: str | None
    server_id: str | None
    message_id: str
    mail_from: str
    from_header: str
    subject: str
    recipients: tuple[str, ...]
    redirected: bool
    original_recipients: dict[str, list[str]] | None
    smtputf8: bool
    raw: bytes
    meta: dict[str, Any] | None
    send_at: datetime | None


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class Job:
    """A claimed message: everything a worker needs to attempt its delivery."""

    id: str
    tenant_id: str
    server_id: str | None
    account_id: str | None
    stage: str | None
    mail_from: str
    smtputf8: bool
    raw: bytes
    attempt: int
    possible_duplicate: bool
    created_at: datetime
    recipients: tuple[tuple[int, str], ...] = ()
    delivered_before: bool = False
    #: Why the claimed row cannot be delivered (its body row is missing, a column cannot be
    #: read); such a job is quarantined, failed with this reason, instead of attempted.
    fault: str | None = None


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class RecipientUpdate:
    position: int
    status: RecipientStatus
    code: int | None
    reply: str


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class AttemptRecord:
    started_at: datetime
    finished_at: datetime
    server_id: str | None
    engine: str
    outcome: str
    code: int | None
    reply: str
    tls_version: str | None
    duration_ms: float
    possible_duplicate: bool
    transcript: str


# Not frozen: made for every message on the worker's path, where a frozen dataclass's
# ``__init__`` costs about four times as much. Treated as immutable all the same.
@dataclass(slots=True)
class Completion:
    """What an attempt decided for one message; applied in bulk by :func:`finish`."""

    job: Job
    status: MessageStatus
    next_attempt_at: datetime | None
    possible_duplicate: bool
    held: bool
    last_error: str | None
    attempt: AttemptRecord | None
    recipients: tuple[RecipientUpdate, ...] = ()
    server_id: str | None = None
    remote_id: str | None = None
    extra_attempts: tuple[AttemptRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class PreparedFinish:
    """The rows :meth:`Queue.finish` writes, built before its transaction begins."""

    attempts: list[tuple[Any, ...]]
    #: Messages that stay with the server they were claimed for and are not held: their
    #: server and held columns are left alone (no index entry rewritten, no server lookup).
    messages: list[tuple[Any, ...]]
    recipients: list[tuple[Any, ...]]
    #: The other messages: sent through a fallback server, or held.
    messages_moved: list[tuple[Any, ...]] = field(default_factory=list)


class Queue(Protocol):
    """The durable queue's operations on one database dialect.

    Every operation runs in the caller's transaction ``tx``: enqueueing commits with the
    request's idempotency record, finishing with the webhook events of the same outcomes.
    A claim is a short write (:meth:`claim`, which leases rows) followed by a read
    (:meth:`load`, bodies and recipients) outside the write lock.
    """

    dialect: str

    async def enqueue(self, tx: Tx, items: Sequence[NewMessage], /, *, now: datetime) -> None:
        """Commit messages and their recipients (one ``executemany`` per table per batch)."""

    async def enqueue_alone(
        self, db: Database, items: Sequence[NewMessage], /, *, tenant_id: str, now: datetime
    ) -> bool:
        """Commit messages in a transaction of their own where that is cheaper, unless the
        tenant or one of its apps has a sending quota; False when nothing was written (the
        caller then uses :meth:`enqueue` with the quota in its transaction)."""

    async def claim(
        self, tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
    ) -> Sequence[Any]:
        """Lease up to ``limit`` due messages to ``worker``; the claimed rows."""

    async def load(self, tx: Tx, claimed: Sequence[Any], /) -> list[Job]:
        """Jobs for claimed rows with bodies and recipients; a row that cannot be loaded
        becomes a job with ``fault`` set, never an exception."""

    async def claim_batch(
        self, db: Database, *, worker: str, limit: int, lease: timedelta
    ) -> Sequence[Any]:
        """:meth:`claim` in a write transaction of its own (the worker's claim)."""

    async def load_batch(self, db: Database, claimed: Sequence[Any], /) -> list[Job]:
        """:meth:`load` in a read transaction of its own (the worker's load)."""

    async def finish_alone(
        self, db: Database, prepared: PreparedFinish, /, *, tenant_ids: Sequence[str]
    ) -> bool:
        """Write prepared outcomes in a transaction of their own where that is cheaper, if
        none of ``tenant_ids`` has an active webhook endpoint; False when nothing was written
        (the caller then uses :meth:`finish` and records the webhook events with it)."""

    def journal_dir(self, db: Database) -> Path | None:
        """Where workers keep outcome journals (:mod:`mailgate.storage.outcome_journal`),
        or None where they keep none."""

    async def hooked_tenants(self, db: Database) -> frozenset[str]:
        """The tenants with an active webhook endpoint (where :meth:`journal_dir` is set)."""

    async def apply_journalled(
        self, db: Database, prepared: PreparedFinish, /, *, worker: str, tenant_ids: Sequence[str]
    ) -> tuple[int | None, frozenset[str]]:
        """Write journalled outcomes to the messages ``worker`` still leases, in a
        transaction of their own, unless one of ``tenant_ids`` has an active webhook
        endpoint now (None: nothing written); with the tenants that have one."""

    def prepare_finish(
        self, completions: Sequence[Completion], /, *, worker: str
    ) -> PreparedFinish:
        """The rows :meth:`finish` writes (pure work, kept out of the write lock)."""

    async def finish(self, tx: Tx, prepared: PreparedFinish, /) -> None:
        """Record attempts and apply the decided states of messages whose lease ``worker``
        still holds."""

    async def release(
        self,
        tx: Tx,
        message_ids: Sequence[str],
        /,
        *,
        worker: str,
        when: datetime,
        possible_duplicate: bool,
        uncount: bool = False,
        held: bool = False,
    ) -> None:
        """Give claimed messages back without an outcome (shutdown, rate limit, hold, a
        claim pass that failed before delivering them)."""

    async def reclaim_expired(self, tx: Tx, *, now: datetime | None = None) -> int:
        """Return messages whose lease ran out to the queue, flagged possible duplicates."""

    async def renew(
        self, tx: Tx, *, worker: str, lease: timedelta, skip: Collection[str] = ()
    ) -> int:
        """Extend the leases ``worker`` holds, except those of the messages ``skip``."""

    async def notify(self, tx: Tx) -> None:
        """Tell listening workers that mail was committed (where the database can)."""
