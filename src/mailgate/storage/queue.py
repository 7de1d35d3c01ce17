"""The durable queue: enqueue, claim with a lease, finish, reclaim expired leases.

A message is *due* exactly when ``next_attempt_at`` is set and not in the future: queued and
deferred messages have it, messages being sent, finished or held have NULL. Claims take due
messages in due order. The operations are the :class:`Queue` protocol, implemented once per
database: :class:`~mailgate.storage.queue_postgres.PostgresQueue` locks candidate rows with
``FOR UPDATE SKIP LOCKED`` so any number of workers on any number of hosts share one
database without blocking each other; :class:`~mailgate.storage.queue_sqlite.SqliteQueue`
claims inside ``BEGIN IMMEDIATE``, which serialises writers on one host. :func:`queue_for`
picks one; the functions below serve callers that touch the queue once per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from mailgate.domain.delivery import MessageStatus
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.db import Database
from mailgate.storage.queue_postgres import CHANNEL, PostgresQueue
from mailgate.storage.queue_sqlite import SqliteQueue
from mailgate.storage.queue_types import (
    ACTIVE_RECIPIENT,
    AttemptRecord,
    Completion,
    Job,
    NewMessage,
    PreparedFinish,
    Queue,
    RecipientUpdate,
)
from mailgate.storage.tables import messages

__all__ = [
    "ACTIVE_RECIPIENT",
    "CHANNEL",
    "AttemptRecord",
    "Completion",
    "Job",
    "NewMessage",
    "PostgresQueue",
    "PreparedFinish",
    "Queue",
    "RecipientUpdate",
    "SqliteQueue",
    "claim",
    "counts_by_status",
    "enqueue",
    "finish",
    "notify",
    "queue_for",
    "release_held",
]

_QUEUES: dict[str, Queue] = {"sqlite": SqliteQueue(), "postgresql": PostgresQueue()}


def queue_for(dialect: str) -> Queue:
    """The queue implementation for a database dialect (``sqlite`` or ``postgresql``)."""
    try:
        return _QUEUES[dialect]
    except KeyError:
        raise ValueError(f"no queue for the {dialect!r} database") from None


async def enqueue(tx: Tx, items: Sequence[NewMessage], *, now: datetime) -> None:
    """Commit messages and their recipients in ``tx`` (see :meth:`Queue.enqueue`)."""
    await queue_for(tx.dialect.name).enqueue(tx, items, now=now)


async def enqueue_alone(
    db: Database, items: Sequence[NewMessage], *, tenant_id: str, now: datetime
) -> bool:
    """Commit messages of ``tenant_id`` in a transaction of their own (one hand-over to the
    database), announced to workers; False when nothing was written because the tenant or
    one of its apps has a sending quota (see :meth:`Queue.enqueue_alone`)."""
    if not items:
        return True
    return await queue_for(db.dialect).enqueue_alone(db, items, tenant_id=tenant_id, now=now)


async def notify(tx: Tx) -> None:
    """Tell listening workers that mail was committed (see :meth:`Queue.notify`)."""
    await queue_for(tx.dialect.name).notify(tx)


async def claim(
    tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
) -> list[Job]:
    """Lease up to ``limit`` due messages to ``worker`` and load them, in one transaction."""
    q = queue_for(tx.dialect.name)
    return await q.load(tx, await q.claim(tx, worker=worker, limit=limit, lease=lease, now=now))


async def finish(tx: Tx, completions: Sequence[Completion], *, worker: str) -> None:
    """Record attempts and apply the decided states, in bulk, in the caller's transaction.

    A message whose lease was lost (reclaimed by another worker) keeps the other worker's
    state; its attempt is still recorded.
    """
    if completions:
        q = queue_for(tx.dialect.name)
        await q.finish(tx, q.prepare_finish(completions, worker=worker))


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
