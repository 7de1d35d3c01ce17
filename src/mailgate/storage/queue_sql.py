"""The queue operations SQLite and PostgreSQL share, written once (:class:`SqlQueue`).

The hot statements (enqueue, load, finish) go to the DBAPI driver through :class:`Bulk`,
which converts values per dialect; each dialect's class supplies what differs: how claim,
reclaim and renewal lock rows, and whether committed mail can be announced.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select, update

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.domain.ids import new_ids
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.bulk import Bulk
from mailgate.storage.db import Database
from mailgate.storage.queue_types import (
    ACTIVE_RECIPIENT,
    Completion,
    Job,
    NewMessage,
    PreparedFinish,
)
from mailgate.storage.tables import messages

_MESSAGE_COLUMNS = (
    "id", "tenant_id", "app_id", "stage", "account_id", "server_id", "status", "message_id",
    "mail_from", "from_header", "subject", "redirected", "original_recipients", "smtputf8",
    "size", "meta", "send_at", "next_attempt_at", "attempts", "possible_duplicate",
    "held", "created_at", "updated_at",
)  # fmt: skip


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


#: A row (``who``: the tenant or app id) when ``tenant_id`` (both placeholders) or one of
#: its apps has a sending quota.
QUOTA_SET = """
SELECT tenant_id AS who FROM tenant_policies WHERE tenant_id = {m}
    AND (quota_per_minute IS NOT NULL OR quota_per_day IS NOT NULL)
UNION ALL SELECT app_id FROM app_quotas WHERE tenant_id = {m}
LIMIT 1
"""


def enqueue_statements(
    b: Bulk, items: Sequence[NewMessage], *, now: datetime
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements of :meth:`SqlQueue.enqueue`, each with its rows (for ``executemany``):
    messages, bodies, recipients."""
    stamp, no, queued = b.time(now), b.flag(False), MessageStatus.QUEUED.value
    flag = (b.flag(False), b.flag(True))  # by bool: the 0/1 or False/True of the dialect
    js = b.json
    message_rows = [
        (
            m.id, m.tenant_id, m.app_id, m.stage, m.account_id, m.server_id, queued,
            m.message_id, m.mail_from, m.from_header, m.subject, flag[m.redirected],
            None if m.original_recipients is None else js(m.original_recipients),
            flag[m.smtputf8], len(m.raw), None if m.meta is None else js(m.meta),
            None if m.send_at is None else b.time(m.send_at),
            b.time(max(m.send_at, now)) if m.send_at else stamp, 0, no, no, stamp, stamp,
        )
        for m in items
    ]  # fmt: skip
    pending = RecipientStatus.PENDING.value
    return [
        (b.insert_sql("messages", _MESSAGE_COLUMNS), message_rows),
        (b.insert_sql("message_bodies", ("message_id", "raw")), [(m.id, m.raw) for m in items]),
        (
            b.insert_sql("message_recipients", ("message_id", "position", "email", "status")),
            [(m.id, i, email, pending) for m in items for i, email in enumerate(m.recipients)],
        ),
    ]


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


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


_ATTEMPT_COLUMNS = (
    "id", "message_id", "n", "started_at", "finished_at", "server_id", "engine", "worker",
    "outcome", "code", "reply", "tls_version", "duration_ms", "possible_duplicate", "transcript",
)  # fmt: skip

#: A server deleted while the attempt was in flight is not written back (its mail was moved
#: by the delete, or is routed again on its next attempt): the row keeps the server it has.
_SERVER_IF_IT_EXISTS = (
    "server_id = COALESCE((SELECT id FROM mail_servers WHERE id = {}), server_id)"
)

_FINISH_COLUMNS = (
    "status", "next_attempt_at", "possible_duplicate", "last_error", "remote_id",
    "finished_at", "lease_owner", "lease_expires_at", "updated_at",
)  # fmt: skip
#: For a message moved to a fallback server or held: the same, then ``held`` and the server.
_FINISH_MOVED_COLUMNS = (*_FINISH_COLUMNS, "held", _SERVER_IF_IT_EXISTS)

_FINAL = frozenset({MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED})


def load_queries(b: Bulk, rows: Sequence[Any]) -> list[tuple[tuple[str, ...], str, str]]:
    """For each chunk of claimed ids: the ids, the bodies query and the recipients query."""
    ids = [r[0] for r in rows]
    out = []
    for start in range(0, len(ids), 500):
        chunk = tuple(ids[start : start + 500])
        marks = b.marks(len(chunk))
        out.append(
            (
                chunk,
                f"SELECT message_id, raw FROM message_bodies WHERE message_id IN ({marks})",  # noqa: S608
                "SELECT message_id, position, email, status FROM message_recipients "  # noqa: S608
                f"WHERE message_id IN ({marks}) ORDER BY message_id, position",
            )
        )
    return out


def jobs_from(rows: Sequence[Any], bodies: Sequence[Any], recipients: Sequence[Any]) -> list[Job]:
    """Jobs for claimed rows from the rows of the bodies and recipients queries."""
    pending: dict[str, list[tuple[int, str]]] = {}
    delivered: set[str] = set()
    for message_id, position, email, status in recipients:
        if status in ACTIVE_RECIPIENT:
            pending.setdefault(message_id, []).append((position, email))
        elif status == RecipientStatus.SENT.value:
            delivered.add(message_id)
    stored = dict(bodies)
    return [_job(row, stored, pending, delivered) for row in rows]


def _attempt_rows(b: Bulk, completions: Sequence[Completion], worker: str) -> list[tuple[Any, ...]]:
    """The attempts rows of ``completions`` (a fallback's failed attempt before the one
    that decided), their ids made together."""
    attempts = [
        (c.job.id, c.job.attempt, a)
        for c in completions
        for a in (*c.extra_attempts, c.attempt)
        if a is not None
    ]
    time, flag = b.time, b.flag
    return [
        (
            attempt_id, message_id, n, time(a.started_at), time(a.finished_at), a.server_id,
            a.engine, worker, a.outcome, a.code, a.reply, a.tls_version, a.duration_ms,
            flag(a.possible_duplicate), a.transcript,
        )
        for attempt_id, (message_id, n, a) in zip(new_ids(len(attempts)), attempts, strict=True)
    ]  # fmt: skip


def finish_statements(b: Bulk, prepared: PreparedFinish) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements of :meth:`SqlQueue.finish`, each with its rows (for ``executemany``)."""
    return [
        (b.insert_sql("attempts", _ATTEMPT_COLUMNS), prepared.attempts),
        (
            b.update_sql("messages", _FINISH_COLUMNS, "id = {} AND lease_owner = {}"),
            prepared.messages,
        ),
        (
            b.update_sql("messages", _FINISH_MOVED_COLUMNS, "id = {} AND lease_owner = {}"),
            prepared.messages_moved,
        ),
        (
            b.update_sql(
                "message_recipients",
                ("status", "code", "reply", "updated_at"),
                "message_id = {} AND position = {}",
            ),
            prepared.recipients,
        ),
    ]


def claim_statement(b: Bulk, lock: str) -> str:
    """The claim's text (see :meth:`SqlQueue.claim`), placeholders in ``b``'s style."""
    return _CLAIM.format(m=b.mark, lock=lock)


def claim_values(
    b: Bulk, *, worker: str, limit: int, lease: timedelta, now: datetime
) -> tuple[Any, ...]:
    """The values of :func:`claim_statement`'s placeholders."""
    stamp = b.time(now)
    return (worker, b.time(now + lease), stamp, stamp, limit)


class SqlQueue:
    """The shared half of the :class:`~mailgate.storage.queue_types.Queue` protocol."""

    dialect = ""
    #: Appended to the claim's candidate SELECT (row locking, where the database has it).
    claim_lock = ""

    async def enqueue(self, tx: Tx, items: Sequence[NewMessage], /, *, now: datetime) -> None:
        """Commit messages and their recipients (one ``executemany`` each for the whole batch)."""
        for sql, rows in enqueue_statements(Bulk(tx), items, now=now):
            if rows:
                await tx.exec_driver_sql(sql, rows)

    async def enqueue_alone(
        self, db: Database, items: Sequence[NewMessage], /, *, tenant_id: str, now: datetime
    ) -> bool:
        """Commit messages in a transaction of their own where that is cheaper, unless the
        tenant or one of its apps has a sending quota (counted in the accepting transaction);
        False when nothing was written (the caller then uses :meth:`enqueue`). Here: always
        False."""
        return False

    async def claim(
        self, tx: Tx, *, worker: str, limit: int, lease: timedelta, now: datetime | None = None
    ) -> Sequence[Any]:
        """Lease up to ``limit`` due messages to ``worker`` (the write half of a claim).

        Written at the driver level: it runs hundreds of times a second under load, and
        SQLAlchemy's row processing would cost more than the database work. Keep the write
        transaction this short: on SQLite every other writer waits for it.
        """
        b = Bulk(tx, dialect=self.dialect)
        values = claim_values(b, worker=worker, limit=limit, lease=lease, now=now or utcnow())
        result = await tx.exec_driver_sql(claim_statement(b, self.claim_lock), values)
        return result.all()

    async def load(self, tx: Tx, rows: Sequence[Any], /) -> list[Job]:
        """Jobs for claimed rows, with their bodies and recipients (a read; no write lock)."""
        if not rows:
            return []
        b = Bulk(tx, dialect=self.dialect)
        bodies: list[Any] = []
        recipients: list[Any] = []
        for chunk, body_query, recipient_query in load_queries(b, rows):
            bodies += (await tx.exec_driver_sql(body_query, chunk)).all()
            recipients += (await tx.exec_driver_sql(recipient_query, chunk)).all()
        return jobs_from(rows, bodies, recipients)

    async def claim_batch(
        self, db: Database, *, worker: str, limit: int, lease: timedelta
    ) -> Sequence[Any]:
        """:meth:`claim` in a write transaction of its own."""
        async with db.transaction() as tx:
            return await self.claim(tx, worker=worker, limit=limit, lease=lease)

    async def load_batch(self, db: Database, rows: Sequence[Any], /) -> list[Job]:
        """:meth:`load` in a read transaction of its own."""
        async with db.read() as tx:
            return await self.load(tx, rows)

    async def finish_alone(
        self, db: Database, prepared: PreparedFinish, /, *, tenant_ids: Sequence[str]
    ) -> bool:
        """Write prepared outcomes in a transaction of their own, when that is cheaper than
        :meth:`finish` and none of ``tenant_ids`` has an active webhook endpoint (whose events
        must be recorded in the same transaction). False when nothing was written: the
        caller then uses :meth:`finish` with the webhook events. Here: always False."""
        return False

    def journal_dir(self, db: Database) -> Path | None:
        """Where workers keep their outcome journals
        (:mod:`mailgate.storage.outcome_journal`), or None where they keep none. Here:
        none (the journal serves a database on the worker's own host)."""
        return None

    async def hooked_tenants(self, db: Database) -> frozenset[str]:
        """The tenants with an active webhook endpoint (their outcomes are recorded with
        their events, never journalled)."""
        raise NotImplementedError("only where journal_dir() is set")

    async def apply_journalled(
        self, db: Database, prepared: PreparedFinish, /, *, worker: str, tenant_ids: Sequence[str]
    ) -> tuple[int | None, frozenset[str]]:
        """Write journalled outcomes to the messages ``worker`` still leases, in a
        transaction of their own, unless one of ``tenant_ids`` has an active webhook
        endpoint (None: nothing written); also the tenants that have one now."""
        raise NotImplementedError("only where journal_dir() is set")

    def prepare_finish(
        self, completions: Sequence[Completion], /, *, worker: str
    ) -> PreparedFinish:
        """Convert completions to statement rows (pure work, kept out of the write lock)."""
        b = Bulk(None, dialect=self.dialect)
        now = b.time(utcnow())
        attempt_rows = _attempt_rows(b, completions, worker)
        # A claimed message is never held (held mail is not due), so ``held`` and the server
        # change only when the outcome says so.
        message_rows: list[tuple[Any, ...]] = []
        moved_rows: list[tuple[Any, ...]] = []
        for c in completions:
            row = (
                c.status.value, b.time(c.next_attempt_at), b.flag(c.possible_duplicate),
                c.last_error, c.remote_id, now if c.status in _FINAL else None, None, None, now,
            )  # fmt: skip
            if c.held or (c.server_id is not None and c.server_id != c.job.server_id):
                server = c.server_id or c.job.server_id
                moved_rows.append((*row, b.flag(c.held), server, c.job.id, worker))
            else:
                message_rows.append((*row, c.job.id, worker))
        recipient_rows = [
            (r.status.value, r.code, r.reply[:2000], now, c.job.id, r.position)
            for c in completions
            for r in c.recipients
        ]
        return PreparedFinish(attempt_rows, message_rows, recipient_rows, moved_rows)

    async def finish(self, tx: Tx, prepared: PreparedFinish, /) -> None:
        """Write prepared outcomes: attempts, message states, recipient states."""
        b = Bulk(tx, dialect=self.dialect)
        for sql, rows in finish_statements(b, prepared):
            if rows:
                await tx.exec_driver_sql(sql, rows)

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
        """Give claimed messages back to the queue without an outcome (shutdown, rate limit,
        hold, a claim pass that failed before delivering them)."""
        if not message_ids:
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
            .where(messages.c.id.in_(list(message_ids)), messages.c.lease_owner == worker)
            .values(**values)
        )

    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        """``query`` locking the rows it selects against other workers, where the database
        locks rows (on SQLite the write transaction already serialises writers)."""
        return query

    async def reclaim_expired(self, tx: Tx, *, now: datetime | None = None) -> int:
        """Return messages whose lease ran out (a dead worker) to the queue, flagged.

        The dead worker may have delivered before dying, so the next attempt is flagged
        ``possible_duplicate``.
        """
        now = now or utcnow()
        expired = self.lock_rows(
            select(messages.c.id).where(
                messages.c.status == MessageStatus.SENDING.value,
                messages.c.lease_expires_at < now,
            )
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

    async def renew(
        self, tx: Tx, *, worker: str, lease: timedelta, skip: Collection[str] = ()
    ) -> int:
        """Extend the leases a live worker holds, so slow deliveries are not reclaimed;
        except those of ``skip`` (messages whose outcome it could not record: their leases
        run out, and they come back flagged)."""
        conditions = [
            messages.c.lease_owner == worker,
            messages.c.status == MessageStatus.SENDING.value,
        ]
        if skip:
            conditions.append(messages.c.id.not_in(list(skip)))
        mine = self.lock_rows(select(messages.c.id).where(*conditions))
        result = await tx.execute(
            update(messages)
            .where(messages.c.id.in_(mine.scalar_subquery()))
            .values(lease_expires_at=utcnow() + lease)
        )
        return int(result.rowcount or 0)

    async def notify(self, tx: Tx) -> None:
        """Tell listening workers that mail was committed: nothing to do by default (the
        workers' poll finds it)."""
