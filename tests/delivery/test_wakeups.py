"""Workers wake when mail is committed, not at the next poll."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from mailgate.engines.factory import EngineCache
from mailgate.storage.listen import listen
from mailgate.worker.runner import Worker
from tests.delivery.conftest import FAST, Tenant

SLOW_POLL = replace(FAST, poll_interval=30.0)


async def _time_to_sent(tenant: Tenant, message_id: str, limit: float = 10.0) -> float:
    started = time.monotonic()
    while (await tenant.message(message_id))["status"] != "sent":
        assert time.monotonic() - started < limit, "the worker did not wake up"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_committed_mail_wakes_the_worker(tenant: Tenant, engines: EngineCache) -> None:
    """In-process wake-ups on SQLite; PostgreSQL LISTEN/NOTIFY when the API is elsewhere."""
    worker = Worker(tenant.ctx, engines=engines, options=SLOW_POLL)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop))]
    if tenant.ctx.db.is_postgres:
        # The API process is another process: only NOTIFY can reach this worker.
        tasks.append(asyncio.create_task(listen(tenant.ctx.db, worker.wake, stop)))
    else:
        tenant.ctx.wake = worker.wake
    try:
        await asyncio.sleep(0.5)  # the worker has polled once and now waits up to 30 s
        message_id = await tenant.send_ok()
        waited = await _time_to_sent(tenant, message_id)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        tenant.ctx.wake = None
    assert waited < 3.0
