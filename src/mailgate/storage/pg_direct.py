"""Plain psycopg connections for the worker's hottest PostgreSQL transactions.

A worker records outcomes before each SMTP connection's next message, so on a busy queue it
commits a handful of outcomes every few milliseconds. Through SQLAlchemy's pool each such
transaction costs a pre-ping round trip, a ``BEGIN`` sent with the first statement, a round
trip for the statements and one more for ``COMMIT``, plus the greenlet hand-overs of the
async adapter around every call. Here a transaction is written into one psycopg pipeline,
``BEGIN`` to ``COMMIT``: one round trip and no adapter.

The connections are in autocommit mode, so every transaction is explicit in what the caller
sends. A connection is pinged before use only when it has been idle for
:data:`IDLE_PING_SECONDS` (a database restart is then noticed before anything is written);
a busy worker uses its connections every few milliseconds and pays nothing. A connection
that failed is closed, and the next use opens a new one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("mailgate.storage")

T = TypeVar("T")
#: A psycopg connection with its default (tuple) rows.
Conn: TypeAlias = "psycopg.AsyncConnection[Any]"

#: A connection unused for longer than this is pinged before its next transaction.
IDLE_PING_SECONDS = 1.0
#: Idle connections kept for reuse (the worker uses at most two at once: claiming and
#: recording outcomes run side by side).
KEEP_IDLE = 4


class DirectPostgres:
    """A few plain psycopg connections (autocommit) to one database; see the module
    docstring. ``dsn`` is a libpq connection string or URI."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        #: Idle connections with the monotonic time each was last used.
        self._idle: list[tuple[Conn, float]] = []
        self._closed = False

    async def run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``await fn(connection)`` on a connection of its own; the connection is kept for
        reuse when ``fn`` left it healthy and outside a transaction, else closed."""
        conn = await self._acquire()
        try:
            result = await fn(conn)
        except BaseException:
            await self._discard_or_keep(conn)
            raise
        await self._discard_or_keep(conn)
        return result

    async def _acquire(self) -> Conn:
        if self._closed:
            raise RuntimeError("the database was disposed")
        while self._idle:
            conn, last_used = self._idle.pop()
            if conn.closed or conn.broken:
                continue
            if time.monotonic() - last_used < IDLE_PING_SECONDS:
                return conn
            try:
                await conn.execute("SELECT 1")
            except Exception as exc:  # a restarted server, a dropped connection
                log.info("a database connection was lost (%s); opening another", type(exc).__name__)
                await _close(conn)
                continue
            return conn
        import psycopg

        return await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)

    async def _discard_or_keep(self, conn: Conn) -> None:
        """Keep ``conn`` for reuse if it is healthy, else close it. A transaction left open
        (``fn`` failed between BEGIN and COMMIT) is rolled back first."""
        from psycopg.pq import TransactionStatus

        if not (conn.closed or conn.broken):
            status = conn.info.transaction_status
            if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                try:
                    await conn.execute("ROLLBACK")
                except Exception:
                    await _close(conn)
                    return
                status = conn.info.transaction_status
            if (
                status is TransactionStatus.IDLE
                and not self._closed
                and len(self._idle) < KEEP_IDLE
            ):
                self._idle.append((conn, time.monotonic()))
                return
        await _close(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await _close(conn)


async def _close(conn: Conn) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
