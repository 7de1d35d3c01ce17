"""The heartbeat of a process running delivery workers, for every process's ``/readyz``.

Every :data:`~mailgate.domain.worker_health.HEARTBEAT_SECONDS` the process writes its row of
``worker_heartbeats`` (host, pid, its claim loops and how many of them claim); it deletes the
row when it stops. Rows of processes that died without saying so are older than
:data:`~mailgate.domain.worker_health.HEARTBEAT_STALE_AFTER` and no longer count; they are
purged after an hour. A failed write (the database is down) is logged and tried again at the
next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from datetime import timedelta

from mailgate.domain.worker_health import HEARTBEAT_SECONDS
from mailgate.runtime import Context
from mailgate.storage import heartbeats as store
from mailgate.storage.base import utcnow

log = logging.getLogger("mailgate.worker")

#: Rows of processes not seen for this long are deleted.
FORGET_AFTER = timedelta(hours=1)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


async def run(ctx: Context, stop: asyncio.Event, *, interval: float = HEARTBEAT_SECONDS) -> None:
    """Beat until ``stop`` is set (or the task is cancelled), then delete the row."""
    name = process_name()
    started = utcnow()
    try:
        while not stop.is_set():
            report = ctx.workers.report(now=time.monotonic())
            now = utcnow()
            beat = store.Heartbeat(
                name=name,
                host=socket.gethostname(),
                pid=os.getpid(),
                loops=report.loops,
                claiming=report.claiming,
                started_at=started,
                seen_at=now,
            )
            try:
                async with ctx.db.transaction() as tx:
                    await store.beat(tx, beat)
                    await store.purge(tx, older_than=now - FORGET_AFTER)
            except Exception as exc:
                log.warning(
                    "writing the worker heartbeat failed (%s); retrying", type(exc).__name__
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        try:
            async with ctx.db.transaction() as tx:
                await store.remove(tx, name)
        except Exception as exc:  # it goes stale instead
            log.warning("removing the worker heartbeat failed (%s)", type(exc).__name__)
