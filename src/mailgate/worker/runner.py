"""The delivery worker: claim due mail, deliver it concurrently, record outcomes in bulk.

One pass of a job reads as steps (ARCHITECTURE.md house style 5):
``claim → resolve server → apply rate limit → deliver (fallback on connection failure) →
decide → record``. Completions are recorded in batches by the worker's
:class:`~mailgate.worker.recording.Recorder`. Each delivery's engine learns when its outcome
is durable (:data:`~mailgate.engines.base.outcome_recording`) and hands a connection its next
content only then, so a worker killed at any moment has sent at most one message per
connection whose outcome is lost; when a delivery waits for that, the engine hurries the
recorder. Leases are renewed while the worker lives; a worker that dies has its mail
reclaimed when the leases expire (its journalled outcomes applied first), flagged as
possible duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from mailgate.domain.delivery import (
    DeliveryResult,
    Envelope,
    OutcomeKind,
)
from mailgate.domain.retry import RetryPolicy
from mailgate.domain.servers import RECOMPOSING_ENGINES, ServerStatus
from mailgate.domain.smime import is_smime_signed
from mailgate.engines.base import OutcomeRecording, outcome_recording
from mailgate.engines.factory import EngineCache
from mailgate.errors import MailgateError
from mailgate.runtime import Context
from mailgate.storage import rate
from mailgate.storage import server_deletion as deletion_store
from mailgate.storage.base import utcnow
from mailgate.storage.queue import (
    AttemptRecord,
    Completion,
    Job,
    queue_for,
)
from mailgate.worker.decide import attempt_record, decide, quarantine
from mailgate.worker.recording import Recorder, first_line
from mailgate.worker.reroute import reroute
from mailgate.worker.servers import ServerDirectory, ServerEntry

log = logging.getLogger("mailgate.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Tuning of one worker. Defaults suit one process on a small machine."""

    batch_size: int = 200
    concurrency: int = 256
    lease: timedelta = timedelta(seconds=120)
    poll_interval: float = 1.0
    flush_interval: float = 0.05
    reclaim_interval: float = 10.0
    shutdown_grace: float = 15.0
    #: The first wait after a failed claim pass (a database error), doubling up to the cap.
    error_backoff: float = 0.5
    error_backoff_cap: float = 30.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()) & 0xFFFF:04x}"


class Worker:
    """Delivers due messages until ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        ctx: Context,
        *,
        engines: EngineCache,
        retry: RetryPolicy | None = None,
        options: WorkerOptions | None = None,
        name: str | None = None,
        slot: str = "worker-0",
        restarted: bool = False,
    ) -> None:
        self.ctx = ctx
        self.health = ctx.workers
        #: The place of this worker in its pool, kept by a replacement after a restart.
        self.slot = slot
        self.restarted = restarted
        self._last_reclaim = 0.0
        self.engines = engines
        self.retry = retry or RetryPolicy(give_up=timedelta(hours=ctx.policy.give_up_hours))
        self.options = options or WorkerOptions()
        self.name = name or worker_name()
        self.servers = ServerDirectory(ctx)
        self.queue = queue_for(ctx.db.dialect)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        #: Set when a claim may be worthwhile again: outcomes were flushed or deliveries ended.
        self._room = asyncio.Event()
        self.recorder = Recorder(
            ctx,
            self.queue,
            worker=self.name,
            batch_size=self.options.batch_size,
            lease=self.options.lease,
            on_recorded=self._room.set,
        )
        self._min_claim = max(1, min(self.options.batch_size, self.options.concurrency) // 2)
        self.delivered = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the worker runs on, kept: asking asyncio for it costs a system call on
        Python 3.11 (it checks the process id), and it is needed for every message."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def wake(self) -> None:
        """Called when mail was committed: claim now instead of at the next poll."""
        self._wake.set()

    # The loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set. Database errors do not end it (see :meth:`_pass`);
        if it ends for any other reason, in-flight mail is still finished and recorded, and
        the exception propagates so that the pool restarts the worker."""
        ended = asyncio.Event()
        self.health.started(self.slot, now=time.monotonic(), restart=self.restarted)
        await self.recorder.open_journal()
        flusher = asyncio.create_task(self._flush_loop(ended), name="mailgate-flush")
        keeper = asyncio.create_task(self._lease_loop(ended), name="mailgate-leases")
        try:
            await self._claim_loop(stop)
        finally:
            self.health.ended(self.slot)
            await self._shutdown()
            ended.set()
            self.recorder.wanted.set()
            await flusher
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            try:
                await self.recorder.flush()
            finally:
                self.recorder.close_journal()

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        backoff = self.options.error_backoff
        while not stop.is_set():
            try:
                full = await self._pass()
            except Exception as exc:  # the database, mostly: report at once, retry later
                self.health.failed(self.slot, type(exc).__name__)
                log.error(
                    "claiming mail failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    first_line(exc),
                    backoff,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self.options.error_backoff_cap)
                continue
            backoff = self.options.error_backoff
            self.health.beat(self.slot, now=time.monotonic())
            if full is not None:
                await self._idle(stop, full=full)

    async def _pass(self) -> bool | None:
        """Claim and start one batch: None to claim again at once, else whether to idle
        until room frees up (True) or only until woken or the next poll (False)."""
        if time.monotonic() - self._last_reclaim > self.options.reclaim_interval:
            # The journals of workers that are gone first: their outcomes are decided.
            await self.recorder.replay_dead_journals()
            async with self.ctx.db.transaction() as tx:
                reclaimed = await self.queue.reclaim_expired(tx)
            self._last_reclaim = time.monotonic()
            if reclaimed:
                log.warning("reclaimed %d message(s) from expired leases", reclaimed)
        room = self.options.concurrency - len(self._inflight)
        # Claim in worthwhile batches: a transaction per handful of messages costs more
        # than waiting for the next flush to free room.
        worthwhile = room >= self._min_claim or not self._inflight
        jobs: list[Job] = []
        if room > 0 and worthwhile:
            rows = await self.queue.claim_batch(
                self.ctx.db,
                worker=self.name,
                limit=min(self.options.batch_size, room),
                lease=self.options.lease,
            )
            if rows:
                try:
                    jobs = await self.queue.load_batch(self.ctx.db, rows)
                except Exception:
                    await self._give_back([row[0] for row in rows])
                    raise
        if jobs:
            try:
                await self._start(jobs)
            except Exception:
                await self._give_back(
                    [j.id for j in jobs if j.fault is None and j.id not in self._inflight]
                )
                raise
            if len(jobs) == min(self.options.batch_size, room):
                return None
        return not worthwhile or room <= 0

    async def _idle(self, stop: asyncio.Event, *, full: bool) -> None:
        self._wake.clear()
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        if full:
            waits.append(asyncio.create_task(self._room.wait()))
        try:
            await asyncio.wait(
                waits, timeout=self.options.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()
        self._room.clear()

    async def _start(self, jobs: list[Job]) -> None:
        broken = [j for j in jobs if j.fault is not None]
        if broken:
            self._quarantine(broken)
            jobs = [j for j in jobs if j.fault is None]
        jobs = await self._route_lost(jobs)
        entries = await self.servers.load({j.server_id for j in jobs if j.server_id})
        fallbacks = {
            e.server.fallback_server_id
            for e in entries.values()
            if e is not None and e.server.fallback_server_id
        }
        if fallbacks:
            entries |= await self.servers.load(fallbacks)
        runnable = await self._admit(jobs, entries)
        for job in runnable:
            task = self._running_loop().create_task(self._attempt(job, entries))
            self._inflight[job.id] = (job, task)
            task.add_done_callback(self._forget(job.id))

    async def _route_lost(self, jobs: list[Job]) -> list[Job]:
        """Route jobs whose server was deleted again (:mod:`mailgate.worker.reroute`): the
        moved ones are bound to their new server before anything else (holds and rate limits
        apply to it); those without a route are deferred with the reason."""
        entries = await self.servers.load({j.server_id for j in jobs if j.server_id})
        lost = [j for j in jobs if not j.server_id or entries.get(j.server_id) is None]
        if not lost:
            return jobs
        async with self.ctx.db.read() as tx:
            routing = await deletion_store.routing_of(tx, {j.tenant_id for j in lost})
        decided = reroute(lost, routing, now=utcnow(), policy=self.retry)
        if decided.moved:
            async with self.ctx.db.transaction() as tx:
                await deletion_store.record_reroutes(
                    tx,
                    [(job.id, job.attempt, note) for job, note in decided.moved],
                    worker=self.name,
                )
            self.servers.forget({j.server_id for j in lost if j.server_id})
        for completion in decided.unroutable:
            log.warning(
                "message %s has no mail server: %s", completion.job.id, completion.last_error
            )
            self.recorder.add(completion)
        new = {job.id: job for job, _ in decided.moved}
        gone = {j.id for j in lost}
        return [new.get(j.id, j) for j in jobs if j.id not in gone or j.id in new]

    async def _give_back(self, message_ids: list[str]) -> None:
        """Return messages this pass claimed but did not start, as never attempted (else
        they would wait for their leases to expire, then come back flagged as possible
        duplicates)."""
        try:
            async with self.ctx.db.transaction() as tx:
                await self.queue.release(
                    tx,
                    message_ids,
                    worker=self.name,
                    when=utcnow(),
                    possible_duplicate=False,
                    uncount=True,
                )
        except Exception as exc:
            log.warning(
                "could not give back %d claimed message(s) (%s); they return when their "
                "leases expire",
                len(message_ids),
                type(exc).__name__,
            )

    def _quarantine(self, jobs: list[Job]) -> None:
        now = utcnow()
        for job in jobs:
            log.error("message %s %s; failing it", job.id, job.fault)
            self.recorder.add(quarantine(job, now=now))
        self.health.quarantined(len(jobs))

    def _forget(self, job_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(job_id, None)
            if self.options.concurrency - len(self._inflight) == self._min_claim:
                # A worthwhile claim fits again: the claim loop need not wait for a flush.
                self._room.set()

        return done

    async def _admit(self, jobs: list[Job], entries: dict[str, ServerEntry | None]) -> list[Job]:
        """Hold mail of servers whose credentials failed; apply per-server rate limits."""
        held: list[Job] = []
        limited: dict[str, list[Job]] = {}
        runnable: list[Job] = []
        for job in jobs:
            entry = entries.get(job.server_id) if job.server_id else None
            if entry is not None and entry.server.status is ServerStatus.AUTH_FAILED:
                held.append(job)
            elif entry is not None and entry.config.rate_limit_per_minute:
                limited.setdefault(entry.server.id, []).append(job)
            else:
                runnable.append(job)
        if not held and not limited:
            return runnable
        now = utcnow()
        async with self.ctx.db.transaction() as tx:
            if held:
                await self.queue.release(
                    tx,
                    [j.id for j in held],
                    worker=self.name,
                    when=now,
                    possible_duplicate=False,
                    uncount=True,
                    held=True,
                )
            for server_id, group in limited.items():
                entry = entries[server_id]
                limit = entry.config.rate_limit_per_minute if entry else None
                granted = await rate.reserve(
                    tx,
                    server_id,
                    limit=limit or len(group),
                    wanted=len(group),
                    now=now,
                )
                runnable += group[:granted]
                later = group[granted:]
                if later:
                    next_window = rate.window_of(now) + 60
                    when = now + timedelta(seconds=next_window - now.timestamp())
                    await self.queue.release(
                        tx,
                        [j.id for j in later],
                        worker=self.name,
                        when=when,
                        possible_duplicate=False,
                        uncount=True,
                    )
        return runnable

    # One attempt ---------------------------------------------------------------------------

    async def _attempt(self, job: Job, entries: dict[str, ServerEntry | None]) -> None:
        # At most ``concurrency`` of these run: a claim takes only what fits (``_pass``).
        # Set in this task's own context: the engine holds a place on its connections until
        # this outcome is committed (see the module docstring).
        recorded = self._running_loop().create_future()
        outcome_recording.set(OutcomeRecording(recorded, self.recorder.hurry))
        try:
            completion = await self._deliver(job, entries)
        except asyncio.CancelledError:
            recorded.set_result(None)
            raise
        except Exception as exc:  # a bug: record it, never lose the message
            log.exception("delivery of %s failed unexpectedly", job.id)
            completion = self._internal_error(job, exc)
        self.recorder.add(completion, recorded)
        self.delivered += 1

    def _internal_error(self, job: Job, exc: Exception) -> Completion:
        result = DeliveryResult(
            kind=OutcomeKind.DEFERRED, reply=f"internal error: {type(exc).__name__}: {exc}"
        )
        now = utcnow()
        return decide(job, result, now=now, policy=self.retry, attempt=None)

    async def _deliver(self, job: Job, entries: dict[str, ServerEntry | None]) -> Completion:
        entry = entries.get(job.server_id) if job.server_id else None
        if entry is None:
            return self._no_server(job)
        if not job.recipients:
            result = DeliveryResult(kind=OutcomeKind.SENT, reply="no recipients left")
            return decide(job, result, now=utcnow(), policy=self.retry, attempt=None)
        envelope = Envelope(
            mail_from=job.mail_from,
            rcpt_to=tuple(email for _, email in job.recipients),
            smtputf8=job.smtputf8,
        )
        fallback = entries.get(entry.server.fallback_server_id or "")
        if fallback is not None and not _can_carry(fallback, job):
            fallback = None
        first = entry
        if fallback is not None and self.servers.is_failing(entry.server.id):
            first = fallback
        result, record = await self._send(job, first, envelope)
        extra: tuple[AttemptRecord, ...] = ()
        if (
            result.connection_error
            and result.kind is OutcomeKind.DEFERRED
            and fallback is not None
            and first is entry
        ):
            self.servers.mark_failing(entry.server.id)
            extra = (record,)
            result, record = await self._send(job, fallback, envelope)
        self._observe(fallback if extra and fallback is not None else first, result)
        return decide(
            job, result, now=utcnow(), policy=self.retry, attempt=record, extra_attempts=extra
        )

    async def _send(
        self, job: Job, entry: ServerEntry, envelope: Envelope
    ) -> tuple[DeliveryResult, AttemptRecord]:
        started = utcnow()
        try:
            engine = self.engines.get(entry.config)
            result = await engine.deliver(envelope, job.raw)
        except MailgateError as exc:
            result = DeliveryResult.whole(
                envelope, OutcomeKind.DEFERRED, reply=f"cannot use this server: {exc}"
            )
        record = attempt_record(
            job,
            result,
            server_id=entry.server.id,
            engine=entry.server.engine.value,
            started_at=started,
            finished_at=utcnow(),
        )
        return result, record

    def _observe(self, entry: ServerEntry, result: DeliveryResult) -> None:
        if result.kind is OutcomeKind.AUTH_FAILED:
            status, detail = ServerStatus.AUTH_FAILED, result.reply[:500]
        elif result.connection_error:
            status, detail = ServerStatus.UNREACHABLE, result.reply[:500]
        elif result.kind in (OutcomeKind.SENT, OutcomeKind.FAILED):
            status, detail = ServerStatus.OK, None
        else:
            return
        if self.servers.note_status(entry.server.id, status):
            self.recorder.status_updates[entry.server.id] = (status, detail)

    def _no_server(self, job: Job) -> Completion:
        """The server was deleted after this batch was routed: the next attempt routes the
        message again (:meth:`_route_lost`)."""
        result = DeliveryResult(
            kind=OutcomeKind.DEFERRED,
            reply="its mail server was deleted; it is routed again on its next attempt",
        )
        orphan = replace(job, server_id=None)
        return decide(orphan, result, now=utcnow(), policy=self.retry, attempt=None)

    # Recording (:mod:`mailgate.worker.recording`) ------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self._inflight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.recorder.wanted.wait(), self.options.flush_interval)
            self.recorder.wanted.clear()
            try:
                await self.recorder.flush()
            except Exception:
                log.exception("recording delivery outcomes failed; retrying")
                await asyncio.sleep(1.0)

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        interval = self.options.lease.total_seconds() / 3
        while not stop.is_set():
            await asyncio.sleep(interval)
            try:
                async with self.ctx.db.transaction() as tx:
                    await self.queue.renew(
                        tx, worker=self.name, lease=self.options.lease, skip=self.recorder.forsaken
                    )
            except Exception:
                log.exception("renewing leases failed; will try again")

    async def _shutdown(self) -> None:
        """Let in-flight deliveries finish for a grace period, then abort and release them."""
        if self._inflight:
            tasks = [task for _, task in self._inflight.values()]
            await asyncio.wait(tasks, timeout=self.options.shutdown_grace)
        aborted = [job for job, task in list(self._inflight.values()) if not task.done()]
        for _, task in list(self._inflight.values()):
            task.cancel()
        for _, task in list(self._inflight.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.recorder.flush()
        if aborted:
            # The data may have been on the wire when the attempt was aborted.
            async with self.ctx.db.transaction() as tx:
                await self.queue.release(
                    tx,
                    [j.id for j in aborted],
                    worker=self.name,
                    when=utcnow(),
                    possible_duplicate=True,
                )
            log.warning("released %d unfinished message(s) on shutdown", len(aborted))


def _can_carry(entry: ServerEntry, job: Job) -> bool:
    """Whether ``entry``'s engine can deliver ``job`` as signed: an S/MIME signature does not
    survive an HTTP engine that rebuilds the message, and mail is never sent unsigned, so
    such a fallback is skipped (the mail waits for its own server)."""
    return entry.server.engine.value not in RECOMPOSING_ENGINES or not is_smime_signed(job.raw)
