"""The durable queue on SQLite: one host, writers serialised by the database.

A claim runs inside ``BEGIN IMMEDIATE`` (see :class:`mailgate.storage.db.Database`), which
already keeps every other writer out, so no statement locks rows; there is no LISTEN, and
workers of other processes find new mail by polling.

The worker's batches (claim, load, recording outcomes) run as direct transactions
(:meth:`~mailgate.storage.db.Database.run_direct`): each is one function on the event
loop's thread, with the same statements as the shared code; so is a batch of accepted mail
when nothing but the mail is written (:meth:`SqliteQueue.enqueue_alone`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mailgate.domain.webhooks import WebhookStatus
from mailgate.storage import outcome_journal
from mailgate.storage.base import utcnow
from mailgate.storage.bulk import Bulk
from mailgate.storage.db import Database
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

_BULK = Bulk(None, dialect="sqlite")
_QUOTA_SET = QUOTA_SET.format(m="?")
_HOOKED_TENANTS = "SELECT DISTINCT tenant_id FROM webhooks WHERE status = ?"
_ACTIVE = (WebhookStatus.ACTIVE.value,)
#: Which of some messages the worker still leases (first placeholder: the worker).
_LEASED = "SELECT id FROM messages WHERE lease_owner = ? AND id IN ({marks})"


def _unless_found(
    check: tuple[str, tuple[Any, ...]] | None,
    statements: Sequence[tuple[str, list[tuple[Any, ...]]]],
) -> Callable[[sqlite3.Connection], bool]:
    """A direct transaction's body: unless the query ``check`` finds a row, each of
    ``statements`` for all its rows, and True; else nothing written and False."""

    def write(conn: sqlite3.Connection) -> bool:
        if check is not None and conn.execute(*check).fetchone():
            return False
        for sql, rows in statements:
            if rows:
                conn.executemany(sql, rows)
        return True

    return write


class SqliteQueue(SqlQueue):
    dialect = "sqlite"

    async def enqueue_alone(
        self, db: Database, items: Sequence[NewMessage], /, *, tenant_id: str, now: datetime
    ) -> bool:
        """The batch written as one direct transaction, in place (:meth:`Database.run_direct`):
        the write lock is held for the inserts alone. Through aiosqlite each statement
        crosses to its thread and back several times, and a busy API's event loop (or, on
        a thread, the interpreter lock it holds) made a batch hold the lock for up to ten
        times its database work, while the workers waited to record outcomes."""
        if not db.direct:
            return False
        # A quota refuses: nothing is written, and the caller counts it in its own way.
        write = _unless_found(
            (_QUOTA_SET, (tenant_id, tenant_id)), enqueue_statements(_BULK, items, now=now)
        )
        return await db.run_direct(write, write=True)

    async def claim_batch(
        self, db: Database, *, worker: str, limit: int, lease: timedelta
    ) -> Sequence[Any]:
        if not db.direct:
            return await super().claim_batch(db, worker=worker, limit=limit, lease=lease)
        sql = claim_statement(_BULK, self.claim_lock)
        values = claim_values(_BULK, worker=worker, limit=limit, lease=lease, now=utcnow())

        def claim(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, values).fetchall()

        return await db.run_direct(claim, write=True)

    async def load_batch(self, db: Database, rows: Sequence[Any], /) -> list[Job]:
        if not db.direct:
            return await super().load_batch(db, rows)
        if not rows:
            return []
        queries = load_queries(_BULK, rows)

        def load(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            bodies: list[Any] = []
            recipients: list[Any] = []
            for chunk, body_query, recipient_query in queries:
                bodies += conn.execute(body_query, chunk).fetchall()
                recipients += conn.execute(recipient_query, chunk).fetchall()
            return bodies, recipients

        bodies, recipients = await db.run_direct(load, write=False)
        return jobs_from(rows, bodies, recipients)

    async def finish_alone(
        self, db: Database, prepared: PreparedFinish, /, *, tenant_ids: Sequence[str]
    ) -> bool:
        if not db.direct:
            return False
        tenants = tuple(sorted(set(tenant_ids)))
        marks = _BULK.marks(len(tenants))
        hooked = f"SELECT 1 FROM webhooks WHERE status = ? AND tenant_id IN ({marks}) LIMIT 1"  # noqa: S608
        # An active endpoint refuses: nothing is written, and the caller records its events
        # with the outcomes.
        check = (hooked, (WebhookStatus.ACTIVE.value, *tenants)) if tenants else None
        finish = _unless_found(check, finish_statements(_BULK, prepared))
        return await db.run_direct(finish, write=True)

    def journal_dir(self, db: Database) -> Path | None:
        if not db.direct or db.sqlite_path is None:
            return None
        return outcome_journal.journal_dir(db.sqlite_path)

    async def hooked_tenants(self, db: Database) -> frozenset[str]:
        def read(conn: sqlite3.Connection) -> frozenset[str]:
            return frozenset(row[0] for row in conn.execute(_HOOKED_TENANTS, _ACTIVE))

        return await db.run_direct(read, write=False)

    async def apply_journalled(
        self, db: Database, prepared: PreparedFinish, /, *, worker: str, tenant_ids: Sequence[str]
    ) -> tuple[int | None, frozenset[str]]:
        ids = outcome_journal.message_ids(prepared)

        def apply(conn: sqlite3.Connection) -> tuple[int | None, frozenset[str]]:
            hooked = frozenset(row[0] for row in conn.execute(_HOOKED_TENANTS, _ACTIVE))
            if hooked.intersection(tenant_ids):
                return None, hooked
            leased: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = _LEASED.format(marks=_BULK.marks(len(chunk)))
                leased.update(row[0] for row in conn.execute(query, (worker, *chunk)))
            for sql, rows in finish_statements(_BULK, outcome_journal.only(prepared, leased)):
                if rows:
                    conn.executemany(sql, rows)
            return len(leased), hooked

        return await db.run_direct(apply, write=True)
