"""The durable queue on PostgreSQL: any number of workers on any number of hosts.

Claims, reclaims and lease renewals lock the rows they pick with ``FOR UPDATE SKIP LOCKED``,
so workers never wait for each other and never take the same message; committed mail is
announced with ``NOTIFY`` on :data:`CHANNEL`, which workers LISTEN on.

Outcomes are committed without waiting for the WAL flush (``synchronous_commit`` off for
that transaction only), as SQLite's ``synchronous=NORMAL`` does: a worker writes outcomes
before each connection's next message, and a flush to disk per write would stall every
connection behind it. If the server itself crashes, outcomes of the last moments can be
lost; their messages are still leased (claims are committed durably), so they come back
when the leases expire, flagged as possible duplicates. Nothing accepted is lost.

The worker's batches (claim, load, recording outcomes) run on plain psycopg connections
(:mod:`mailgate.storage.pg_direct`), each written as one pipeline: a claim or a load is one
round trip, and so is an outcome transaction from BEGIN to COMMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Select

from mailgate.domain.webhooks import WebhookStatus
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.bulk import Bulk
from mailgate.storage.db import Database
from mailgate.storage.pg_direct import Conn
from mailgate.storage.queue_sql import (
    QUOTA_SET,
    SqlQueue,
    claim_statement,
    claim_values,
    enqueue_statements,
    finish_statements,
    jobs_from,
    load_queries,
)
from mailgate.storage.queue_types import Job, NewMessage, PreparedFinish

CHANNEL = "mailgate_queue"
_BULK = Bulk(None, dialect="postgresql")
#: Fails the transaction when a tenant of the outcomes has an active webhook endpoint (its
#: events must be committed with the outcomes): casting the status text to a number raises
#: for the first such row, and for no other. One pipeline can then hold the whole outcome
#: transaction, COMMIT included, without waiting for this answer first.
_REFUSE_IF_HOOKED = (
    "SELECT CAST(status AS integer) FROM webhooks WHERE status = %s AND tenant_id = ANY(%s) LIMIT 1"
)
#: Fails the transaction, likewise, when the tenant or one of its apps has a sending quota
#: (counted in the accepting transaction, the caller's way). The text cast is of the found
#: row's own value, which the planner cannot evaluate ahead: it fails only when a row is.
_REFUSE_IF_QUOTA = (
    "SELECT CAST('quota of ' || who AS integer) FROM ("  # noqa: S608 - constant text
    + QUOTA_SET.format(m="%s")
    + ") AS quota_set"
)

Statement = tuple[str, Sequence[Any] | None]


async def _unless_refused(
    head: Sequence[Statement],
    statements: Sequence[tuple[str, list[tuple[Any, ...]]]],
    tail: Sequence[Statement],
    conn: Conn,
) -> bool:
    """``head``, each of ``statements`` for all its rows, then ``tail``: one pipeline, one
    round trip. ``head`` opens the transaction and may hold a refusal (:data:`_REFUSE_IF_HOOKED`,
    :data:`_REFUSE_IF_QUOTA`); when it refuses the result is False, nothing written
    (:class:`~mailgate.storage.pg_direct.DirectPostgres` rolls the transaction back)."""
    import psycopg

    try:
        async with conn.pipeline():
            for sql, params in head:
                await conn.execute(sql, params)
            cursor = conn.cursor()
            for sql, rows in statements:
                await cursor.executemany(sql, rows)
            for sql, params in tail:
                await conn.execute(sql, params)
    except psycopg.errors.InvalidTextRepresentation:
        return False  # the aborted transaction is rolled back as the connection is put back
    return True


class PostgresQueue(SqlQueue):
    dialect = "postgresql"
    claim_lock = "FOR UPDATE SKIP LOCKED"

    async def finish(self, tx: Tx, prepared: PreparedFinish, /) -> None:
        await tx.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        await super().finish(tx, prepared)

    async def enqueue_alone(
        self, db: Database, items: Sequence[NewMessage], /, *, tenant_id: str, now: datetime
    ) -> bool:
        """The accepting transaction in one pipeline of a plain connection: BEGIN, the
        quota check (which fails the transaction when a quota is set), the inserts, NOTIFY,
        COMMIT. False when a quota is set: nothing was written."""
        statements = [
            (sql, rows) for sql, rows in enqueue_statements(_BULK, items, now=now) if rows
        ]

        head = [("BEGIN", None), (_REFUSE_IF_QUOTA, (tenant_id, tenant_id))]
        tail = [(f"NOTIFY {CHANNEL}", None), ("COMMIT", None)]
        return await db.run_postgres(partial(_unless_refused, head, statements, tail))

    async def claim_batch(
        self, db: Database, *, worker: str, limit: int, lease: timedelta
    ) -> Sequence[Any]:
        """The claim as one statement in autocommit (its own transaction, committed
        durably) on a plain connection: one round trip."""
        sql = claim_statement(_BULK, self.claim_lock)
        values = claim_values(_BULK, worker=worker, limit=limit, lease=lease, now=utcnow())

        async def claim(conn: Conn) -> list[Any]:
            cursor = await conn.execute(sql, values)
            return await cursor.fetchall()

        return await db.run_postgres(claim)

    async def load_batch(self, db: Database, rows: Sequence[Any], /) -> list[Job]:
        """Bodies and recipients of claimed rows, every query in one pipeline. The rows are
        leased to this worker, so the reads need no common snapshot."""
        if not rows:
            return []
        queries = load_queries(_BULK, rows)

        async def load(conn: Conn) -> tuple[list[Any], list[Any]]:
            cursors = []
            async with conn.pipeline():
                for chunk, body_query, recipient_query in queries:
                    cursors.append(
                        (
                            await conn.execute(body_query, chunk),
                            await conn.execute(recipient_query, chunk),
                        )
                    )
            bodies: list[Any] = []
            recipients: list[Any] = []
            for body_cursor, recipient_cursor in cursors:
                bodies += await body_cursor.fetchall()
                recipients += await recipient_cursor.fetchall()
            return bodies, recipients

        bodies, recipients = await db.run_postgres(load)
        return jobs_from(rows, bodies, recipients)

    async def finish_alone(
        self, db: Database, prepared: PreparedFinish, /, *, tenant_ids: Sequence[str]
    ) -> bool:
        """The whole outcome transaction in one pipeline of a plain connection: BEGIN, the
        webhook check (which fails the transaction when a tenant has an endpoint), the
        statements of :meth:`finish`, COMMIT; one round trip. False when a tenant has an
        endpoint: nothing was written, and the caller records events with the outcomes."""
        statements = [(sql, rows) for sql, rows in finish_statements(_BULK, prepared) if rows]
        tenants = sorted(set(tenant_ids))

        head = [
            ("BEGIN", None),
            ("SET LOCAL synchronous_commit TO OFF", None),
            (_REFUSE_IF_HOOKED, (WebhookStatus.ACTIVE.value, tenants)),
        ]
        return await db.run_postgres(partial(_unless_refused, head, statements, [("COMMIT", None)]))

    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        # Rows locked right now are being claimed or finished by another transaction:
        # skip them rather than wait (and never deadlock with it).
        return query.with_for_update(skip_locked=True)

    async def notify(self, tx: Tx) -> None:
        await tx.exec_driver_sql(f"NOTIFY {CHANNEL}")
