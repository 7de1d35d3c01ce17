"""The IMAP sync scheduler: every account's inbox is read again once its interval has passed.

One pass reads as steps: ``due accounts (interval passed, no lease held) → sync each
(bounded concurrency) → log the outcome``. Every process running workers runs a scheduler;
the database lease (``storage.inbound``) lets exactly one of them sync a given account at a
time, and the others skip it. A sync that fails (server down, password changed) stamps the
account's ``last_sync_error`` and waits for the next interval like any other, so a broken
inbox is retried at the sync rate, never in a tight loop.

The interval is ``imap_sync_interval`` seconds (instance setting; ``0`` disables the
scheduler); an account's ``imap.sync_interval_minutes`` overrides it (``0``: manual only).
Log lines name the account and the error code, never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailgate import metrics
from mailgate.domain.inbound import DueAccount
from mailgate.engines.oauth_imap import imap_tokens
from mailgate.errors import Conflict, MailgateError
from mailgate.inbound.errors import ImapSyncError
from mailgate.inbound.sync import SyncOptions, sync_account
from mailgate.net.dialer import Dialer
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.runtime import Context
from mailgate.storage import inbound as store
from mailgate.storage.base import utcnow

log = logging.getLogger("mailgate.imap_sync")

#: The default of the ``imap_sync_interval`` setting, in seconds.
DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """``poll``: how often due accounts are looked for; ``concurrency``: syncs at once."""

    interval: float = DEFAULT_INTERVAL
    poll: float = 30.0
    concurrency: int = 2
    batch: int = 20
    sync: SyncOptions = field(default_factory=SyncOptions)


class ImapSyncScheduler:
    """Syncs due inboxes; call :meth:`run_once` (tests) or :meth:`run` (workers)."""

    def __init__(
        self,
        ctx: Context,
        *,
        options: SchedulerOptions | None = None,
        dialer: Dialer | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ctx = ctx
        self.options = options or SchedulerOptions()
        self.dialer: Dialer = dialer or GuardedDialer(
            NetworkPolicy(ctx.policy.allowed_networks, allow_port_25=ctx.policy.allow_port_25)
        )
        self.clock = clock
        self._slots = asyncio.Semaphore(max(self.options.concurrency, 1))

    async def run_once(self) -> int:
        """Sync the accounts due now; return how many syncs completed without error."""
        async with self.ctx.db.read() as tx:
            due = await store.due_accounts(
                tx,
                now=self.clock(),
                default_interval=timedelta(seconds=self.options.interval),
                limit=self.options.batch,
            )
        results = await asyncio.gather(*(self._sync(account) for account in due))
        return sum(results)

    async def _sync(self, account: DueAccount) -> bool:
        async with self._slots:
            inbox = store.InboundStore(
                self.ctx.db,
                self.ctx.box,
                tenant_id=account.tenant_id,
                account_id=account.account_id,
                clock=self.clock,
            )
            try:
                counts = await sync_account(
                    inbox,
                    dialer=self.dialer,
                    options=self.options.sync,
                    tokens=imap_tokens(self.dialer),
                )
            except Conflict:
                log.debug("imap sync of account %s skipped: running elsewhere", account.account_id)
                return False
            except ImapSyncError as exc:
                metrics.imap_sync_failed(account.tenant_id)
                log.warning("imap sync of account %s failed: %s", account.account_id, exc.summary())
                return False
            except MailgateError as exc:
                metrics.imap_sync_failed(account.tenant_id)
                log.error("imap sync of account %s failed: %s", account.account_id, exc)
                return False
            if counts.stored or counts.bounces:
                log.info(
                    "imap sync of account %s: %d stored, %d duplicates, %d bounces, "
                    "%d recipients bounced",
                    account.account_id,
                    counts.stored,
                    counts.duplicates,
                    counts.bounces,
                    counts.bounced_recipients,
                )
            return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll for due accounts until ``stop`` is set; a failing pass is logged, not fatal."""
        if self.options.interval <= 0:
            return
        wait = max(min(self.options.poll, self.options.interval), 0.05)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("imap sync pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)


async def run(ctx: Context, stop: asyncio.Event, *, interval: float = DEFAULT_INTERVAL) -> None:
    """The scheduler as a worker-pool helper task (``interval`` 0: do nothing)."""
    options = SchedulerOptions(
        interval=interval, sync=SyncOptions(max_bytes=ctx.policy.max_message_bytes)
    )
    await ImapSyncScheduler(ctx, options=options).run(stop)
