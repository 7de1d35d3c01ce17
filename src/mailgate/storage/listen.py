"""PostgreSQL LISTEN for queue wake-ups, so workers on other hosts start at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mailgate.storage.db import Database
from mailgate.storage.queue import CHANNEL

log = logging.getLogger("mailgate.queue")


async def listen(db: Database, on_notify: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``on_notify`` for every NOTIFY on the queue channel until ``stop`` is set.

    A no-op on SQLite (one host: in-process wake-ups and polling cover it). Connection
    losses are retried every few seconds; polling keeps mail flowing meanwhile.
    """
    if not db.is_postgres:
        return
    import psycopg

    dsn = db.dsn
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                while not stop.is_set():
                    # Wake at least every second to notice ``stop``.
                    async for _ in conn.notifies(timeout=1.0):
                        on_notify()
        except (OSError, psycopg.Error) as exc:
            log.warning("queue LISTEN connection failed (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5)
