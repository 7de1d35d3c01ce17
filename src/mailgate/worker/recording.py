"""The worker's outcomes on their way to the database (:class:`Recorder`).

A delivery's outcome joins :attr:`Recorder.done`; :meth:`Recorder.flush` makes the outcomes
gathered so far durable, which lets the connections waiting for them send on (the bound on
repeats after a kill, :meth:`mailgate.engines.smtp.pool.SessionPool.hold`). Outcomes that
deliveries wait for go to the worker's outcome journal where the queue keeps one
(:mod:`mailgate.storage.outcome_journal`, SQLite) and are applied in bulk; the others are
committed as they come, alone where that is cheaper, else with their webhook events and
the servers' new statuses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from mailgate.domain.servers import ServerStatus
from mailgate.runtime import Context
from mailgate.storage import servers as server_store
from mailgate.storage import webhooks as webhook_store
from mailgate.storage.outcome_journal import OutcomeJournal, merge, replay_dead
from mailgate.storage.queue import Completion, PreparedFinish, Queue
from mailgate.worker import observe

log = logging.getLogger("mailgate.worker")


class Recorder:
    """Outcomes of one worker, from decided to durable; see the module docstring."""

    def __init__(
        self,
        ctx: Context,
        queue: Queue,
        *,
        worker: str,
        batch_size: int,
        lease: timedelta,
        on_recorded: Callable[[], None],
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.worker = worker
        self._batch_size = batch_size
        self._lease_seconds = lease.total_seconds()
        #: Called once outcomes are durable (room for claims again).
        self._on_recorded = on_recorded
        self.done: list[Completion] = []
        #: Resolved when the completions of ``done`` are durable (or could not be made so).
        self.recorded: list[asyncio.Future[None]] = []
        self.status_updates: dict[str, tuple[ServerStatus, str | None]] = {}
        #: Set when a flush is wanted now (the flush loop waits on it).
        self.wanted = asyncio.Event()
        #: Set when a delivery waits for outcomes to be durable (see :meth:`_record`).
        self._hurried = False
        self._journal: OutcomeJournal | None = None
        #: Tenants with an active webhook endpoint, as last read (None: not known).
        self._hooked: frozenset[str] | None = None
        #: Journalled outcomes not applied yet, and how many messages they are.
        self._journalled: list[tuple[PreparedFinish, list[Completion]]] = []
        self._journalled_count = 0
        #: Journalled outcomes whose apply failed, and their journal files.
        self._unapplied: list[tuple[PreparedFinish, list[Completion]]] = []
        self._unapplied_files: list[Path] = []
        #: Messages whose outcomes could not be committed, with when (see :meth:`_forsake`).
        self.forsaken: dict[str, float] = {}

    def add(self, completion: Completion, recorded: asyncio.Future[None] | None = None) -> None:
        """An outcome to record (``recorded`` resolved once it is durable); a full batch,
        or an outcome nobody waits for, asks for a flush at once."""
        self.done.append(completion)
        if recorded is None:
            self.wanted.set()
            return
        self.recorded.append(recorded)
        if len(self.done) >= self._batch_size:
            self.wanted.set()

    def hurry(self) -> None:
        """A delivery waits for outcomes to be durable before it may send on: now."""
        self._hurried = True
        self.wanted.set()

    async def flush(self) -> None:
        """Record the outcomes completed so far (:meth:`_record`); then apply the journalled
        ones when enough have gathered or at a quiet moment (a flush nobody hurried)."""
        hurried, self._hurried = self._hurried, False
        if self.done or self.status_updates:
            await self._record(journal=hurried)
        pending = self._journalled or self._unapplied
        if pending and (not hurried or self._journalled_count >= self._batch_size):
            await self._apply_journal()

    async def _record(self, *, journal: bool) -> None:
        """Make the outcomes completed so far durable; their connections may then send on.

        When deliveries wait for them (``journal``) and the worker keeps an outcome journal,
        they are appended to it (:mod:`mailgate.storage.outcome_journal`) and applied to
        the database in bulk later (:meth:`_apply_journal`); else they are committed now.
        When a commit fails the outcomes are not retried: the worker stops renewing those
        messages' leases, and they come back flagged as possible duplicates when the leases
        run out."""
        done, self.done = self.done, []
        recorded, self.recorded = self.recorded, []
        updates, self.status_updates = self.status_updates, {}
        try:
            prepared = self.queue.prepare_finish(done, worker=self.worker)
            tenant_ids = [c.job.tenant_id for c in done if c.recipients]
            if journal and not updates and self._journal_append(prepared, tenant_ids):
                self._journalled.append((prepared, done))
                self._journalled_count += len(done)
            else:
                try:
                    await self._commit(prepared, done, tenant_ids, updates)
                except BaseException:
                    self._forsake(done)
                    raise
        finally:
            for future in recorded:
                if not future.done():
                    future.set_result(None)
        observe.record(done)
        self._on_recorded()

    def _forsake(self, done: list[Completion]) -> None:
        """Outcomes that could not be committed: their leases are no longer renewed, so
        the messages come back (flagged) when the leases run out, as they would had this
        worker died. They are forgotten after twice the lease."""
        now = time.monotonic()
        horizon = now - 2 * self._lease_seconds
        self.forsaken = {k: t for k, t in self.forsaken.items() if t > horizon}
        self.forsaken.update((c.job.id, now) for c in done)

    async def _commit(
        self,
        prepared: PreparedFinish,
        done: list[Completion],
        tenant_ids: list[str],
        updates: dict[str, tuple[ServerStatus, str | None]],
    ) -> None:
        """Commit outcomes: alone where that is cheaper, else with their webhook events
        and the servers' new statuses."""
        db = self.ctx.db
        if updates or not await self.queue.finish_alone(db, prepared, tenant_ids=tenant_ids):
            async with db.transaction() as tx:
                await self.queue.finish(tx, prepared)
                await webhook_store.record_events(tx, done)
                if updates:
                    await server_store.set_status_many(tx, updates)

    # The outcome journal -------------------------------------------------------------------

    async def open_journal(self) -> None:
        """Keep an outcome journal where the queue has them (a SQLite database); without
        one (it cannot be created), outcomes are committed as they come."""
        directory = self.queue.journal_dir(self.ctx.db)
        if directory is None:
            return
        try:
            self._hooked = await self.queue.hooked_tenants(self.ctx.db)
            journal = OutcomeJournal(directory, self.worker)
            journal.open()
        except Exception as exc:
            log.warning(
                "no outcome journal (%s: %s); committing outcomes as they come",
                type(exc).__name__,
                first_line(exc),
            )
            return
        self._journal = journal

    def _journal_append(self, prepared: PreparedFinish, tenant_ids: list[str]) -> bool:
        """Append to the journal; False when the outcomes must be committed instead (no
        journal, a tenant with an active webhook endpoint, a write that failed)."""
        if self._journal is None or self._hooked is None or self._hooked.intersection(tenant_ids):
            return False
        try:
            self._journal.append(prepared)
        except OSError as exc:
            log.warning("cannot write the outcome journal (%s); committing outcomes", exc)
            return False
        return True

    async def _apply_journal(self) -> None:
        """Apply the journalled outcomes to the messages in one transaction, then delete
        their journal files. When that fails they stay (in memory and in the files) for
        the next flush; should this worker die first, another replays its journal."""
        if self._journal is None:
            return
        batches, self._journalled = self._journalled, []
        self._journalled_count = 0
        self._unapplied += batches
        self._unapplied_files.append(self._journal.rotate())
        prepared = merge([p for p, _ in self._unapplied])
        done = [c for _, d in self._unapplied for c in d]
        tenant_ids = [c.job.tenant_id for c in done if c.recipients]
        applied, self._hooked = await self.queue.apply_journalled(
            self.ctx.db, prepared, worker=self.worker, tenant_ids=tenant_ids
        )
        if applied is None:
            # A tenant has had an active webhook endpoint since: events with the outcomes.
            await self._commit(prepared, done, tenant_ids, {})
        for path in self._unapplied_files:
            self._journal.discard(path)
        self._unapplied, self._unapplied_files = [], []

    async def replay_dead_journals(self) -> None:
        """Apply the journals of workers that are gone (see
        :func:`~mailgate.storage.outcome_journal.replay_dead`)."""
        directory = self.queue.journal_dir(self.ctx.db)
        if directory is None:
            return

        async def apply(worker: str, rows: PreparedFinish) -> int:
            applied, _ = await self.queue.apply_journalled(
                self.ctx.db, rows, worker=worker, tenant_ids=()
            )
            return applied or 0

        await replay_dead(directory, apply)

    def close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close(applied=not self._unapplied and not self._journalled)
            self._journal = None


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, for a log line."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no detail"
