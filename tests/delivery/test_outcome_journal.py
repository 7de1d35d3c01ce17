"""The worker's outcome journal on SQLite: outcomes that connections wait for are journalled
and applied in bulk, exactly once; the journal of a worker that died is applied by the next
one, and its messages are not sent again."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.engines.factory import EngineCache
from mailgate.storage.outcome_journal import OutcomeJournal
from mailgate.storage.queue import AttemptRecord, Completion, RecipientUpdate, queue_for
from mailgate.storage.tables import attempts, messages
from mailgate.worker.runner import Worker
from tests.delivery.conftest import FAST, T, Tenant, drain
from tests.support.smtp_servers import RawSmtpServer


async def _enqueue(tenant: Tenant, count: int) -> None:
    batch = [
        {"to": [f"user{i}@example.com"], "subject": f"n{i}", "text": "x", "stage": "production"}
        for i in range(count)
    ]
    r = await tenant.client.post(
        f"{T}/messages/batch", json={"messages": batch}, headers=tenant.sender
    )
    assert r.status_code == 200
    assert all(item["status"] == 202 for item in r.json()["items"])


async def _attempts_per_message(tenant: Tenant) -> list[int]:
    async with tenant.ctx.db.read() as tx:
        rows = await tx.execute(
            select(func.count(attempts.c.id))
            .select_from(messages)
            .outerjoin(attempts, attempts.c.message_id == messages.c.id)
            .group_by(messages.c.id)
        )
        return [int(n) for (n,) in rows]


async def _statuses(tenant: Tenant) -> list[str]:
    async with tenant.ctx.db.read() as tx:
        return [r[0] for r in await tx.execute(select(messages.c.status))]


async def test_outcomes_waited_for_are_journalled_then_applied_once(
    tenant: Tenant, engines: EngineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("outcome journals are kept with a SQLite database")
    appended: list[int] = []
    original = OutcomeJournal.append

    def counting(self: OutcomeJournal, prepared: object) -> None:
        original(self, prepared)  # type: ignore[arg-type]
        appended.append(len(prepared.messages))  # type: ignore[attr-defined]

    monkeypatch.setattr(OutcomeJournal, "append", counting)
    total = 120
    async with RawSmtpServer.scripted() as sink:
        # Two connections for 120 messages: deliveries wait for outcomes to be durable.
        await tenant.server(sink.port, max_connections=2)
        await _enqueue(tenant, total)
        await drain(tenant.ctx, engines=engines)
    assert len(sink.contents) == total
    assert await _statuses(tenant) == ["sent"] * total
    assert await _attempts_per_message(tenant) == [1] * total
    assert appended and sum(appended) <= total  # journalled in small batches
    directory = queue_for("sqlite").journal_dir(tenant.ctx.db)
    assert directory is not None and directory.is_dir()
    assert list(directory.iterdir()) == []  # applied, and the worker's files removed


async def test_the_journal_of_a_worker_that_died_is_applied_by_the_next(
    tenant: Tenant, engines: EngineCache
) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("outcome journals are kept with a SQLite database")
    db, q = tenant.ctx.db, queue_for("sqlite")
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port)
        await _enqueue(tenant, 4)
        # A worker claimed three, delivered two and journalled their outcomes, then died
        # with the third on the wire, before applying anything (its lease runs an hour).
        gone = "other-host:4242:dead"
        rows = await q.claim_batch(db, worker=gone, limit=3, lease=timedelta(hours=1))
        jobs = await q.load_batch(db, rows)
        now = datetime.now(UTC)
        done = [
            Completion(
                job=job, status=MessageStatus.SENT, next_attempt_at=None,
                possible_duplicate=False, held=False, last_error=None,
                attempt=AttemptRecord(
                    started_at=now, finished_at=now, server_id=job.server_id, engine="smtp",
                    outcome="sent", code=250, reply="2.0.0 queued as JOURNAL", tls_version=None,
                    duration_ms=1.0, possible_duplicate=False, transcript="S: 250 journalled",
                ),
                recipients=tuple(
                    RecipientUpdate(p, RecipientStatus.SENT, 250, "2.0.0 queued as JOURNAL")
                    for p, _ in job.recipients
                ),
            )
            for job in jobs[:2]
        ]  # fmt: skip
        directory = q.journal_dir(db)
        assert directory is not None
        journal = OutcomeJournal(directory, gone)
        journal.open()
        journal.append(q.prepare_finish(done[:1], worker=gone))
        journal.append(q.prepare_finish(done[1:], worker=gone))
        journal.close(applied=False)  # the process died: the lock is released, files stay
        worker = Worker(tenant.ctx, engines=engines, options=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            deadline = time.monotonic() + 10
            while sorted(await _statuses(tenant)) != ["sending", "sent", "sent", "sent"]:
                assert time.monotonic() < deadline, await _statuses(tenant)
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        # The two journalled were not sent again; the one never claimed was sent now; the
        # one on the dead worker's wire waits for its lease to expire (then flagged).
        assert len(sink.contents) == 1
    async with db.read() as tx:
        replies = sorted(r[0] for r in await tx.execute(select(attempts.c.reply)))
        leased = (
            await tx.execute(select(messages.c.lease_owner).where(messages.c.status == "sending"))
        ).scalar_one()
    assert replies.count("2.0.0 queued as JOURNAL") == 2 and len(replies) == 3
    assert leased == gone
    assert list(directory.iterdir()) == []
