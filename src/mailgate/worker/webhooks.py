"""The webhook dispatcher: claim due deliveries, POST them signed, record what happened.

One pass reads as steps: ``claim → sign (with the previous secret too, during a rotation's
overlap) → post (bounded concurrency, one deadline each) →
decide (delivered, retry with backoff, or give up) → record (endpoint health, disabling)``.
Several dispatchers (one per worker process) may share a database: claims skip rows another
one has locked, and a claim is a lease, so a dispatcher that dies leaves nothing stuck.
Delivery is at least once; receivers deduplicate on ``X-Mailgate-Delivery``.

The clock is injectable so that tests can cross the 24-hour windows without waiting.
Neither secrets nor request headers are ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from mailgate import metrics
from mailgate.domain.webhooks import (
    REQUEST_TIMEOUT_SECONDS,
    DeliveryPolicy,
    encode_body,
    request_headers,
)
from mailgate.net.policy import NetworkPolicy
from mailgate.net.webhook import PostResult, WebhookPoster
from mailgate.runtime import Context
from mailgate.storage import webhooks as store
from mailgate.storage.base import utcnow
from mailgate.storage.webhooks import AttemptOutcome, DueDelivery

log = logging.getLogger("mailgate.webhooks")


@dataclass(frozen=True, slots=True)
class DispatcherOptions:
    """Tuning of one dispatcher; the lease must outlast a request and its recording."""

    batch_size: int = 50
    concurrency: int = 16
    timeout: float = REQUEST_TIMEOUT_SECONDS
    lease: timedelta = timedelta(seconds=60)
    poll_interval: float = 1.0


class Dispatcher:
    """Delivers webhook events; use as an async context manager, or call :meth:`run`.

    ``clock`` gives the current time (UTC); ``poster`` replaces the HTTP client (a poster
    trusting a test CA, or with a test resolver); ``rng`` drives the retry jitter.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        policy: DeliveryPolicy | None = None,
        options: DispatcherOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        poster: WebhookPoster | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy or DeliveryPolicy()
        self.options = options or DispatcherOptions()
        self.clock = clock
        self._own_poster = poster is None
        self.poster = poster or WebhookPoster(
            timeout=self.options.timeout, max_connections=self.options.concurrency
        )
        self.rng = rng or random.Random()
        self._slots = asyncio.Semaphore(self.options.concurrency)

    async def __aenter__(self) -> Dispatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_poster:
            await self.poster.aclose()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries, attempt them all, record; return how many."""
        now = self.clock()
        async with self.ctx.db.transaction() as tx:
            due = await store.claim_due(
                tx,
                self.ctx.box,
                limit=self.options.batch_size,
                now=now,
                lease=self.options.lease,
            )
        if not due:
            return 0
        # The instance policy is read per pass: a changed allow-list applies at once.
        allowed = self.ctx.policy.allowed_networks
        network = NetworkPolicy(allowed, allow_port_25=self.ctx.policy.allow_port_25)
        results = await asyncio.gather(*(self._post(d, network, allowed) for d in due))
        finished = self.clock()
        outcomes = [self._decide(d, r, finished) for d, r in zip(due, results, strict=True)]
        async with self.ctx.db.transaction() as tx:
            disabled = await store.finish(tx, outcomes, now=finished, policy=self.policy)
        for webhook_id in disabled:
            log.warning("webhook %s disabled after failing continuously", webhook_id)
        return len(due)

    async def _post(
        self, delivery: DueDelivery, network: NetworkPolicy, allowed: tuple[str, ...]
    ) -> PostResult:
        body = encode_body(delivery.payload)
        async with self._slots:
            headers = request_headers(
                secret=delivery.secret,
                event=delivery.event,
                delivery_id=delivery.id,
                timestamp=int(self.clock().timestamp()),
                body=body,
                previous_secret=delivery.previous_secret,
            )
            return await self.poster.post(
                delivery.url, body, headers, policy=network, allowed=allowed
            )

    def _decide(self, delivery: DueDelivery, result: PostResult, now: datetime) -> AttemptOutcome:
        if result.ok:
            return AttemptOutcome(delivery.id, delivery.webhook_id, True, result.status, None, None)
        when = self.policy.next_attempt(
            created_at=delivery.created_at, now=now, attempts=delivery.attempts, rng=self.rng
        )
        error = (result.error or "failed")[:500]
        metrics.webhook_failed()
        log.info(
            "webhook delivery %s (attempt %d) failed: %s; %s",
            delivery.id,
            delivery.attempts,
            error,
            f"next attempt at {when.isoformat()}" if when else "giving up",
        )
        return AttemptOutcome(delivery.id, delivery.webhook_id, False, result.status, error, when)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; a full batch is followed at once by the next."""
        while not stop.is_set():
            count = 0
            try:
                count = await self.run_once()
            except Exception:
                log.exception("webhook dispatch failed; will try again")
            if count >= self.options.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.poll_interval)


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Run a dispatcher with the default policy until ``stop`` is set (a worker helper task)."""
    async with Dispatcher(ctx) as dispatcher:
        await dispatcher.run(stop)
