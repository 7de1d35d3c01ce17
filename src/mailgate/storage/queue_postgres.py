"""The durable queue on PostgreSQL: any number of workers on any number of hosts.

Claims, reclaims and lease renewals lock the rows they pick with ``FOR UPDATE SKIP LOCKED``,
so workers never wait for each other and never take the same message; committed mail is
announced with ``NOTIFY`` on :data:`CHANNEL`, which workers LISTEN on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from mailgate.storage.base import Tx
from mailgate.storage.queue_sql import SqlQueue

CHANNEL = "mailgate_queue"


class PostgresQueue(SqlQueue):
    dialect = "postgresql"
    claim_lock = "FOR UPDATE SKIP LOCKED"

    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        # Rows locked right now are being claimed or finished by another transaction:
        # skip them rather than wait (and never deadlock with it).
        return query.with_for_update(skip_locked=True)

    async def notify(self, tx: Tx) -> None:
        await tx.exec_driver_sql(f"NOTIFY {CHANNEL}")
