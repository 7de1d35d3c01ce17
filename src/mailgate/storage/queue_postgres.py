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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select

from mailgate.domain.webhooks import WebhookStatus
from mailgate.storage.base import Tx
from mailgate.storage.bulk import Bulk
from mailgate.storage.db import Database
from mailgate.storage.queue_sql import SqlQueue, finish_statements
from mailgate.storage.queue_types import PreparedFinish

CHANNEL = "mailgate_queue"
_BULK = Bulk(None, dialect="postgresql")
_HOOKED = "SELECT 1 FROM webhooks WHERE status = %s AND tenant_id = ANY(%s) LIMIT 1"


class _Hooked(Exception):
    """A tenant of the outcomes has an active webhook endpoint."""


class PostgresQueue(SqlQueue):
    dialect = "postgresql"
    claim_lock = "FOR UPDATE SKIP LOCKED"

    async def finish(self, tx: Tx, prepared: PreparedFinish, /) -> None:
        await tx.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        await super().finish(tx, prepared)

    async def finish_alone(
        self, db: Database, prepared: PreparedFinish, /, *, tenant_ids: Sequence[str]
    ) -> bool:
        """The webhook check and the statements of :meth:`finish` in one pipeline of the
        driver (one round trip instead of one per statement), then the commit; rolled back
        instead when a tenant has an endpoint (rare enough to pay the round trip twice)."""
        statements = [(sql, rows) for sql, rows in finish_statements(_BULK, prepared) if rows]
        tenants = sorted(set(tenant_ids))
        try:
            async with db.transaction() as tx:
                conn = (await tx.get_raw_connection()).driver_connection
                if conn is None:
                    return False
                async with conn.pipeline():
                    await conn.execute("SET LOCAL synchronous_commit TO OFF")
                    hooked = await conn.execute(_HOOKED, (WebhookStatus.ACTIVE.value, tenants))
                    cursor = conn.cursor()
                    for sql, rows in statements:
                        await cursor.executemany(sql, rows)
                if await hooked.fetchone() is not None:
                    raise _Hooked
        except _Hooked:
            return False  # rolled back: the caller records events with the outcomes
        return True

    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        # Rows locked right now are being claimed or finished by another transaction:
        # skip them rather than wait (and never deadlock with it).
        return query.with_for_update(skip_locked=True)

    async def notify(self, tx: Tx) -> None:
        await tx.exec_driver_sql(f"NOTIFY {CHANNEL}")
