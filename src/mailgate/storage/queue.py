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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.storage.base import Tx, as_utc, utcnow
from mailgate.storage.tables import attempts, message_recipients, messages

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


async def enqueue(tx: Tx, items: Sequence[NewMessage], *, now: datetime) -> None:
    """Commit messages and their recipients (one round trip each for the whole batch)."""
    if not items:
        return
    await tx.execute(
        insert(messages),
        [
            {
                "id": m.id,
                "tenant_id": m.tenant_id,
                "app_id": m.app_id,
                "stage": m.stage,
                "account_id": m.account_id,
                "server_id": m.server_id,
                "status": MessageStatus.QUEUED.value,
                "message_id": m.message_id,
                "mail_from": m.mail_from,
                "from_header": m.from_header,
                "subject": m.subject,
                "redirected": m.redirected,
                "original_recipients": m.original_recipients,
                "smtputf8": m.smtputf8,
                "size": len(m.raw),
                "raw": m.raw,
                "meta": m.meta,
                "send_at": m.send_at,
                "next_attempt_at": max(m.send_at, now) if m.send_at else now,
                "attempts": 0,
                "possible_duplicate": False,
                "held": False,
                "created_at": now,
                "updated_at": now,
            }
            for m in items
        ],
    )
    await tx.execute(
        insert(message_recipients),
        [
            {
                "message_id": m.id,
                "position": i,
                "email": email,
                "status": RecipientStatus.PENDING.value,
            }
            for m in items
            for i, email in enumerate(m.recipients)
        ],
    )


async def claim(
    tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
) -> list[Job]:
    """Lease up to ``limit`` due messages to ``worker`` and return them as jobs."""
    now = now or utcnow()
    candidates = (
        select(messages.c.id)
        .where(messages.c.next_attempt_at <= now)
        .order_by(messages.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = await tx.execute(
        update(messages)
        .where(messages.c.id.in_(candidates.scalar_subquery()))
        .values(
            status=MessageStatus.SENDING.value,
            lease_owner=worker,
            lease_expires_at=now + lease,
            next_attempt_at=None,
            attempts=messages.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            messages.c.id,
            messages.c.tenant_id,
            messages.c.server_id,
            messages.c.account_id,
            messages.c.stage,
            messages.c.mail_from,
            messages.c.smtputf8,
            messages.c.raw,
            messages.c.attempts,
            messages.c.possible_duplicate,
            messages.c.created_at,
        )
    )
    rows = claimed.all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    pending: dict[str, list[tuple[int, str]]] = {}
    delivered: set[str] = set()
    for chunk_start in range(0, len(ids), 500):
        result = await tx.execute(
            select(
                message_recipients.c.message_id,
                message_recipients.c.position,
                message_recipients.c.email,
                message_recipients.c.status,
            )
            .where(message_recipients.c.message_id.in_(ids[chunk_start : chunk_start + 500]))
            .order_by(message_recipients.c.message_id, message_recipients.c.position)
        )
        for message_id, position, email, status in result:
            if status in ACTIVE_RECIPIENT:
                pending.setdefault(message_id, []).append((position, email))
            elif status == RecipientStatus.SENT.value:
                delivered.add(message_id)
    return [
        Job(
            id=r.id,
            tenant_id=r.tenant_id,
            server_id=r.server_id,
            account_id=r.account_id,
            stage=r.stage,
            mail_from=r.mail_from,
            smtputf8=r.smtputf8,
            raw=bytes(r.raw),
            attempt=r.attempts,
            possible_duplicate=r.possible_duplicate,
            created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            recipients=tuple(pending.get(r.id, ())),
            delivered_before=r.id in delivered,
        )
        for r in rows
    ]


def _attempt_row(message_id: str, n: int, a: AttemptRecord, worker: str) -> dict[str, Any]:
    from mailgate.domain.ids import new_id

    return {
        "id": new_id(),
        "message_id": message_id,
        "n": n,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "server_id": a.server_id,
        "engine": a.engine,
        "worker": worker,
        "outcome": a.outcome,
        "code": a.code,
        "reply": a.reply,
        "tls_version": a.tls_version,
        "duration_ms": a.duration_ms,
        "possible_duplicate": a.possible_duplicate,
        "transcript": a.transcript,
    }


_FINISH = (
    update(messages)
    .where(and_(messages.c.id == bindparam("b_id"), messages.c.lease_owner == bindparam("b_owner")))
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next"),
        possible_duplicate=bindparam("b_dup"),
        held=bindparam("b_held"),
        last_error=bindparam("b_error"),
        server_id=bindparam("b_server"),
        remote_id=bindparam("b_remote"),
        finished_at=bindparam("b_finished"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)

_RECIPIENT = (
    update(message_recipients)
    .where(
        and_(
            message_recipients.c.message_id == bindparam("b_id"),
            message_recipients.c.position == bindparam("b_pos"),
        )
    )
    .values(
        status=bindparam("b_status"),
        code=bindparam("b_code"),
        reply=bindparam("b_reply"),
        updated_at=bindparam("b_now"),
    )
)


async def finish(tx: Tx, completions: Sequence[Completion], *, worker: str) -> None:
    """Record attempts and apply the decided states, in bulk, in the caller's transaction."""
    if not completions:
        return
    now = utcnow()
    attempt_rows: list[dict[str, Any]] = []
    for c in completions:
        n = c.job.attempt
        for extra in c.extra_attempts:
            attempt_rows.append(_attempt_row(c.job.id, n, extra, worker))
        if c.attempt is not None:
            attempt_rows.append(_attempt_row(c.job.id, n, c.attempt, worker))
    if attempt_rows:
        await tx.execute(insert(attempts), attempt_rows)
    final = {MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED}
    await tx.execute(
        _FINISH,
        [
            {
                "b_id": c.job.id,
                "b_owner": worker,
                "b_status": c.status.value,
                "b_next": c.next_attempt_at,
                "b_dup": c.possible_duplicate,
                "b_held": c.held,
                "b_error": c.last_error,
                "b_server": c.server_id or c.job.server_id,
                "b_remote": c.remote_id,
                "b_finished": now if c.status in final else None,
                "b_now": now,
            }
            for c in completions
        ],
    )
    recipient_rows = [
        {
            "b_id": c.job.id,
            "b_pos": r.position,
            "b_status": r.status.value,
            "b_code": r.code,
            "b_reply": r.reply[:2000],
            "b_now": now,
        }
        for c in completions
        for r in c.recipients
    ]
    if recipient_rows:
        await tx.execute(_RECIPIENT, recipient_rows)


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


async def next_due(tx: Tx) -> datetime | None:
    """When the earliest queued or deferred message becomes due (None when there is none)."""
    value = (await tx.execute(select(func.min(messages.c.next_attempt_at)))).scalar_one_or_none()
    return as_utc(value)


CHANNEL = "mailgate_queue"


async def notify(tx: Tx) -> None:
    """Tell listening workers (PostgreSQL LISTEN) that mail was committed; no-op on SQLite."""
    if tx.dialect.name == "postgresql":
        await tx.exec_driver_sql(f"NOTIFY {CHANNEL}")
