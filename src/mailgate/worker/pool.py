"""Running N delivery workers in one process, with wake-ups and housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from mailgate.engines.factory import EngineCache
from mailgate.engines.oauth.tokens import token_source_for
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.runtime import Context
from mailgate.storage.listen import listen
from mailgate.worker import heartbeat, imap_sync, maintenance
from mailgate.worker import webhooks as webhook_dispatch
from mailgate.worker.runner import Worker, WorkerOptions

log = logging.getLogger("mailgate.worker")

#: The wait before a dead worker is replaced, doubling while replacements keep dying.
RESTART_DELAY = 0.5
RESTART_DELAY_CAP = 30.0
#: How long a stopping pool waits for its heartbeat to delete its row.
HEARTBEAT_STOP_GRACE = 5.0


def guarded_engines(ctx: Context) -> EngineCache:
    """Engines whose every connection passes the instance network policy.

    OAuth token endpoints (XOAUTH2, Microsoft Graph) are reached through the same dialer.
    """
    policy = NetworkPolicy(ctx.policy.allowed_networks, allow_port_25=ctx.policy.allow_port_25)
    dialer = GuardedDialer(policy)
    return EngineCache(dialer=dialer, token_sources=partial(token_source_for, dialer=dialer))


def options_for(ctx: Context) -> WorkerOptions:
    """Worker options from the instance settings (the lease length)."""
    lease = ctx.policy.lease_seconds
    return WorkerOptions(
        lease=timedelta(seconds=lease), reclaim_interval=max(0.5, min(10.0, lease / 2))
    )


class WorkerPool:
    """``count`` workers sharing one engine cache (and so one connection pool per server)."""

    def __init__(
        self,
        ctx: Context,
        *,
        count: int,
        options: WorkerOptions | None = None,
        engines: EngineCache | None = None,
    ) -> None:
        self.ctx = ctx
        self.engines = engines or guarded_engines(ctx)
        options = options or options_for(ctx)
        self.options = options
        self.workers = [
            Worker(ctx, engines=self.engines, options=options, slot=f"worker-{i}")
            for i in range(max(count, 0))
        ]

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake()

    def waker(self) -> Callable[[], None]:
        return self.wake

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish in-flight mail and close connections."""
        if not self.workers:
            await stop.wait()
            return
        workers = [
            asyncio.create_task(self._keep(i, stop), name=f"worker-{i}")
            for i in range(len(self.workers))
        ]
        helpers = [
            asyncio.create_task(listen(self.ctx.db, self.wake, stop), name="listen"),
            asyncio.create_task(maintenance.run(self.ctx, stop), name="maintenance"),
            asyncio.create_task(heartbeat.run(self.ctx, stop), name="heartbeat"),
            asyncio.create_task(webhook_dispatch.run(self.ctx, stop), name="webhooks"),
            asyncio.create_task(
                imap_sync.run(self.ctx, stop, interval=self.ctx.policy.imap_sync_interval),
                name="imap-sync",
            ),
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            stop.set()
            beat = next(t for t in helpers if t.get_name() == "heartbeat")
            # The heartbeat ends on stop, deleting its row; a database that does not answer
            # does not hold the shutdown up (the row then goes stale).
            await asyncio.wait([beat], timeout=HEARTBEAT_STOP_GRACE)
            for task in helpers:
                task.cancel()
            for task in [*workers, *helpers]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.engines.aclose()

    async def _keep(self, index: int, stop: asyncio.Event) -> None:
        """Run worker ``index`` until ``stop``, replacing it whenever it dies."""
        delay = RESTART_DELAY
        while not stop.is_set():
            worker = self.workers[index]
            began = time.monotonic()
            try:
                await worker.run(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker %s died; restarting it", worker.slot)
            else:
                if stop.is_set():
                    return
                log.error("delivery worker %s stopped unexpectedly; restarting it", worker.slot)
            if time.monotonic() - began > RESTART_DELAY_CAP:
                delay = RESTART_DELAY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, RESTART_DELAY_CAP)
            self.workers[index] = Worker(
                self.ctx,
                engines=self.engines,
                options=self.options,
                slot=worker.slot,
                restarted=True,
            )
