"""The durable queue: enqueue, claim with a lease, finish, reclaim expired leases.

A message is *due* exactly when ``next_attempt_at`` is set and not in the future: queued and
deferred messages have it, messages being sent, finished or held have NULL. Claims take due
messages in due order. On PostgreSQL the candidate rows are locked with
``FOR UPDATE SKIP LOCKED`` so any number of workers on any number of hosts share one
database without blocking each other; on SQLite the claim runs inside ``BEGIN IMMEDIATE``,
which serialises writers on one host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.domain.ids import new_id
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.bulk import Bulk
from mailgate.storage.tables import messages

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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    position: int
    status: RecipientStatus
    code: int | None
    reply: str


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


_MESSAGE_COLUMNS = (
    "id", "tenant_id", "app_id", "stage", "account_id", "server_id", "status", "message_id",
    "mail_from", "from_header", "subject", "redirected", "original_recipients", "smtputf8",
    "size", "meta", "send_at", "next_attempt_at", "attempts", "possible_duplicate",
    "held", "created_at", "updated_at",
)  # fmt: skip


async def enqueue(tx: Tx, items: Sequence[NewMessage], *, now: datetime) -> None:
    """Commit messages and their recipients (one ``executemany`` each for the whole batch)."""
    if not items:
        return
    b = Bulk(tx)
    stamp, no, queued = b.time(now), b.flag(False), MessageStatus.QUEUED.value
    await b.insert(
        "messages",
        _MESSAGE_COLUMNS,
        [
            (
                m.id, m.tenant_id, m.app_id, m.stage, m.account_id, m.server_id, queued,
                m.message_id, m.mail_from, m.from_header, m.subject, b.flag(m.redirected),
                b.json(m.original_recipients), b.flag(m.smtputf8), len(m.raw),
                b.json(m.meta), b.time(m.send_at),
                b.time(max(m.send_at, now)) if m.send_at else stamp, 0, no, no, stamp, stamp,
            )
            for m in items
        ],
    )  # fmt: skip
    await b.insert("message_bodies", ("message_id", "raw"), [(m.id, m.raw) for m in items])
    pending = RecipientStatus.PENDING.value
    await b.insert(
        "message_recipients",
        ("message_id", "position", "email", "status"),
        [(m.id, i, email, pending) for m in items for i, email in enumerate(m.recipients)],
    )


_CLAIM = """
UPDATE messages SET status = 'sending', lease_owner = {m}, lease_expires_at = {m},
    next_attempt_at = NULL, attempts = attempts + 1, updated_at = {m}
WHERE id IN (
    SELECT id FROM messages WHERE next_attempt_at <= {m}
    ORDER BY next_attempt_at LIMIT {m} {lock}
)
RETURNING id, tenant_id, server_id, account_id, stage, mail_from, smtputf8, attempts,
    possible_duplicate, created_at
"""


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


async def claim_rows(
    tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
) -> Sequence[Any]:
    """Lease up to ``limit`` due messages to ``worker`` (the write half of :func:`claim`).

    Written at the driver level: it runs hundreds of times a second under load, and
    SQLAlchemy's row processing would cost more than the database work. Keep the write
    transaction this short: on SQLite every other writer waits for it.
    """
    now = now or utcnow()
    b = Bulk(tx)
    sql = _CLAIM.format(m=b.mark, lock="" if b.sqlite else "FOR UPDATE SKIP LOCKED")
    stamp = b.time(now)
    result = await tx.exec_driver_sql(sql, (worker, b.time(now + lease), stamp, stamp, limit))
    return result.all()


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


async def jobs_for(tx: Tx, rows: Sequence[Any]) -> list[Job]:
    """Jobs for claimed rows, with their bodies and recipients (a read; no write lock)."""
    if not rows:
        return []
    b = Bulk(tx)
    ids = [r[0] for r in rows]
    pending: dict[str, list[tuple[int, str]]] = {}
    delivered: set[str] = set()
    bodies: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = b.marks(len(chunk))
        body_query = f"SELECT message_id, raw FROM message_bodies WHERE message_id IN ({marks})"  # noqa: S608
        stored: Sequence[Any] = (await tx.exec_driver_sql(body_query, tuple(chunk))).all()
        bodies.update((message_id, raw) for message_id, raw in stored)
        query = (
            "SELECT message_id, position, email, status FROM message_recipients "  # noqa: S608
            f"WHERE message_id IN ({marks}) ORDER BY message_id, position"
        )
        found: Sequence[Any] = (await tx.exec_driver_sql(query, tuple(chunk))).all()
        for message_id, position, email, status in found:
            if status in ACTIVE_RECIPIENT:
                pending.setdefault(message_id, []).append((position, email))
            elif status == RecipientStatus.SENT.value:
                delivered.add(message_id)
    return [_job(row, bodies, pending, delivered) for row in rows]


def _job(
    row: Any,
    bodies: dict[str, Any],
    pending: dict[str, list[tuple[int, str]]],
    delivered: set[str],
) -> Job:
    (job_id, tenant_id, server_id, account_id, stage, mail_from, smtputf8, attempt,
     duplicate, created_at) = row  # fmt: skip
    fault: str | None = None
    raw = b""
    try:
        created = _parse_time(created_at)
    except (TypeError, ValueError) as exc:
        created, fault = datetime.now(UTC), f"its creation time cannot be read ({exc})"
    body = bodies.get(job_id)
    if body is None:
        fault = "its stored body is missing"
    else:
        raw = _bytes(body)
    return Job(
        id=job_id,
        tenant_id=tenant_id,
        server_id=server_id,
        account_id=account_id,
        stage=stage,
        mail_from=mail_from,
        smtputf8=bool(smtputf8),
        raw=raw,
        attempt=attempt,
        possible_duplicate=bool(duplicate),
        created_at=created,
        recipients=tuple(pending.get(job_id, ())),
        delivered_before=job_id in delivered,
        fault=None if fault is None else f"quarantined: the message cannot be loaded: {fault}",
    )


async def claim(
    tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
) -> list[Job]:
    """Lease up to ``limit`` due messages to ``worker`` and return them as jobs."""
    rows = await claim_rows(tx, worker=worker, limit=limit, lease=lease, now=now)
    return await jobs_for(tx, rows)


_ATTEMPT_COLUMNS = (
    "id", "message_id", "n", "started_at", "finished_at", "server_id", "engine", "worker",
    "outcome", "code", "reply", "tls_version", "duration_ms", "possible_duplicate", "transcript",
)  # fmt: skip

_FINISH_COLUMNS = (
    "status", "next_attempt_at", "possible_duplicate", "held", "last_error", "server_id",
    "remote_id", "finished_at", "lease_owner", "lease_expires_at", "updated_at",
)  # fmt: skip

_FINAL = frozenset({MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED})


def _attempt_row(
    b: Bulk, message_id: str, n: int, a: AttemptRecord, worker: str
) -> tuple[Any, ...]:
    return (
        new_id(), message_id, n, b.time(a.started_at), b.time(a.finished_at), a.server_id,
        a.engine, worker, a.outcome, a.code, a.reply, a.tls_version, a.duration_ms,
        b.flag(a.possible_duplicate), a.transcript,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PreparedFinish:
    """The rows :func:`finish` writes, built before its transaction begins."""

    attempts: list[tuple[Any, ...]]
    messages: list[tuple[Any, ...]]
    recipients: list[tuple[Any, ...]]


def prepare_finish(
    dialect: str, completions: Sequence[Completion], *, worker: str
) -> PreparedFinish:
    """Convert completions to statement rows (pure work, kept out of the write lock)."""
    b = Bulk(None, dialect=dialect)
    now = b.time(utcnow())
    attempt_rows: list[tuple[Any, ...]] = []
    for c in completions:
        for extra in c.extra_attempts:
            attempt_rows.append(_attempt_row(b, c.job.id, c.job.attempt, extra, worker))
        if c.attempt is not None:
            attempt_rows.append(_attempt_row(b, c.job.id, c.job.attempt, c.attempt, worker))
    message_rows = [
        (
            c.status.value, b.time(c.next_attempt_at), b.flag(c.possible_duplicate),
            b.flag(c.held), c.last_error, c.server_id or c.job.server_id, c.remote_id,
            now if c.status in _FINAL else None, None, None, now, c.job.id, worker,
        )
        for c in completions
    ]  # fmt: skip
    recipient_rows = [
        (r.status.value, r.code, r.reply[:2000], now, c.job.id, r.position)
        for c in completions
        for r in c.recipients
    ]
    return PreparedFinish(attempt_rows, message_rows, recipient_rows)


async def apply_finish(tx: Tx, prepared: PreparedFinish) -> None:
    """Write prepared outcomes: attempts, message states, recipient states."""
    b = Bulk(tx)
    await b.insert("attempts", _ATTEMPT_COLUMNS, prepared.attempts)
    await b.update("messages", _FINISH_COLUMNS, "id = {} AND lease_owner = {}", prepared.messages)
    await b.update(
        "message_recipients",
        ("status", "code", "reply", "updated_at"),
        "message_id = {} AND position = {}",
        prepared.recipients,
    )


async def finish(tx: Tx, completions: Sequence[Completion], *, worker: str) -> None:
    """Record attempts and apply the decided states, in bulk, in the caller's transaction.

    A message whose lease was lost (reclaimed by another worker) keeps the other worker's
    state; its attempt is still recorded.
    """
    if completions:
        await apply_finish(tx, prepare_finish(tx.dialect.name, completions, worker=worker))


async def reclaim_expired(tx: Tx, *, now: datetime | None = None) -> int:
    """Return messages whose lease ran out (a dead worker) to the queue, flagged.

    The dead worker may have delivered before dying, so the next attempt is flagged
    ``possible_duplicate``.
    """
    now = now or utcnow()
    expired = (
        select(messages.c.id)
        .where(
            messages.c.status == MessageStatus.SENDING.value,
            messages.c.lease_expires_at < now,
        )
        .with_for_update(skip_locked=True)
    )
    result = await tx.execute(
        update(messages)
        .where(messages.c.id.in_(expired.scalar_subquery()))
        .values(
            status=MessageStatus.DEFERRED.value,
            next_attempt_at=now,
            possible_duplicate=True,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    return int(result.rowcount or 0)


async def release(
    tx: Tx,
    jobs: Sequence[Job],
    *,
    worker: str,
    when: datetime,
    possible_duplicate: bool,
    uncount: bool = False,
    held: bool = False,
) -> None:
    """Give claimed jobs back to the queue without an outcome (shutdown, rate limit, hold)."""
    if not jobs:
        return
    values: dict[str, Any] = {
        "status": MessageStatus.DEFERRED.value,
        "next_attempt_at": None if held else when,
        "held": held,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": utcnow(),
    }
    if possible_duplicate:
        values["possible_duplicate"] = True
    if uncount:
        values["attempts"] = messages.c.attempts - 1
    await tx.execute(
        update(messages)
        .where(messages.c.id.in_([j.id for j in jobs]), messages.c.lease_owner == worker)
        .values(**values)
    )


async def renew_leases(tx: Tx, *, worker: str, lease: timedelta) -> int:
    """Extend the leases a live worker holds, so slow deliveries are not reclaimed."""
    now = utcnow()
    # Rows locked right now are being finished by the same worker: skip them rather than
    # wait (and never deadlock with that other transaction).
    mine = (
        select(messages.c.id)
        .where(
            messages.c.lease_owner == worker,
            messages.c.status == MessageStatus.SENDING.value,
        )
        .with_for_update(skip_locked=True)
    )
    result = await tx.execute(
        update(messages)
        .where(messages.c.id.in_(mine.scalar_subquery()))
        .values(lease_expires_at=now + lease)
    )
    return int(result.rowcount or 0)


async def release_held(tx: Tx, server_id: str, *, now: datetime | None = None) -> int:
    """Make the mail held for a server due again (after its settings were fixed)."""
    now = now or utcnow()
    result = await tx.execute(
        update(messages)
        .where(messages.c.server_id == server_id, messages.c.held.is_(True))
        .values(held=False, next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount or 0)


async def counts_by_status(tx: Tx, tenant_id: str | None = None) -> dict[str, int]:
    query = select(messages.c.status, func.count()).group_by(messages.c.status)
    if tenant_id is not None:
        query = query.where(messages.c.tenant_id == tenant_id)
    counts = {s.value: 0 for s in MessageStatus}
    for status, count in await tx.execute(query):
        counts[status] = int(count)
    return counts


CHANNEL = "mailgate_queue"


async def notify(tx: Tx) -> None:
    """Tell listening workers (PostgreSQL LISTEN) that mail was committed; no-op on SQLite."""
    if tx.dialect.name == "postgresql":
        await tx.exec_driver_sql(f"NOTIFY {CHANNEL}")
