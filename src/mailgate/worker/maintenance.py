"""Housekeeping: purge delivered mail past its retention, forget old idempotency keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from mailgate.runtime import Context
from mailgate.storage import idempotency
from mailgate.storage import messages as message_store
from mailgate.storage.base import utcnow

log = logging.getLogger("mailgate.maintenance")

INTERVAL_SECONDS = 600.0


async def purge_once(ctx: Context) -> tuple[int, int]:
    """Delete sent messages older than the retention and expired idempotency keys."""
    now = utcnow()
    async with ctx.db.transaction() as tx:
        messages = await message_store.purge_delivered(
            tx, older_than=now - timedelta(days=ctx.policy.retention_days)
        )
        keys = await idempotency.purge(tx, now=now)
    if messages or keys:
        log.info("purged %d delivered message(s) and %d idempotency key(s)", messages, keys)
    return messages, keys


async def run(ctx: Context, stop: asyncio.Event, *, interval: float = INTERVAL_SECONDS) -> None:
    while not stop.is_set():
        try:
            await purge_once(ctx)
        except Exception:
            log.exception("housekeeping failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
