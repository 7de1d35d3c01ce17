"""The durable queue through its :class:`Queue` protocol, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, insert, select, update

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.domain.ids import new_id
from mailgate.runtime import Context
from mailgate.storage import queue
from mailgate.storage.queue import (
    AttemptRecord,
    Completion,
    Job,
    NewMessage,
    PostgresQueue,
    Queue,
    RecipientUpdate,
    SqliteQueue,
    queue_for,
)
from mailgate.storage.tables import (
    app_quotas,
    apps,
    attempts,
    message_bodies,
    message_recipients,
    messages,
    tenant_policies,
    tenants,
    webhooks,
)

LEASE = timedelta(seconds=60)


async def _tenant(ctx: Context) -> str:
    tenant_id = new_id()
    now = datetime.now(UTC)
    async with ctx.db.transaction() as tx:
        await tx.execute(
            insert(tenants).values(
                id=tenant_id, slug=f"t{tenant_id[:8]}", name="T", created_at=now, updated_at=now
            )
        )
    return tenant_id


def _message(tenant_id: str, n: int, *, recipients: int = 1) -> NewMessage:
    return NewMessage(
        id=new_id(), tenant_id=tenant_id, app_id=None, stage=None, account_id=None,
        server_id=None, message_id=f"<m{n}@example.com>", mail_from="a@example.com",
        from_header="a@example.com", subject=f"n{n}",
        recipients=tuple(f"r{i}@example.com" for i in range(recipients)), redirected=False,
        original_recipients=None, smtputf8=False, raw=f"body {n}".encode(), meta=None,
        send_at=None,
    )  # fmt: skip


async def _queued(ctx: Context, count: int, **kw: int) -> tuple[Queue, list[NewMessage]]:
    q = queue_for(ctx.db.dialect)
    tenant_id = await _tenant(ctx)
    items = [_message(tenant_id, n, **kw) for n in range(count)]
    async with ctx.db.transaction() as tx:
        await q.enqueue(tx, items, now=datetime.now(UTC) - timedelta(seconds=1))
    return q, items


async def _status(ctx: Context, message_id: str) -> tuple[str, str | None]:
    async with ctx.db.read() as tx:
        row = (
            await tx.execute(
                select(messages.c.status, messages.c.lease_owner).where(messages.c.id == message_id)
            )
        ).one()
    return row[0], row[1]


def test_each_dialect_has_its_queue() -> None:
    assert isinstance(queue_for("sqlite"), SqliteQueue)
    assert isinstance(queue_for("postgresql"), PostgresQueue)
    with pytest.raises(ValueError, match="mysql"):
        queue_for("mysql")


async def test_claim_load_finish(ctx: Context) -> None:
    q, items = await _queued(ctx, 3, recipients=2)
    async with ctx.db.transaction() as tx:
        rows = await q.claim(tx, worker="w1", limit=2, lease=LEASE)
    async with ctx.db.read() as tx:
        jobs = await q.load(tx, rows)
    assert [j.id for j in jobs] == [m.id for m in items[:2]]
    assert [(j.attempt, j.raw, j.fault) for j in jobs] == [
        (1, b"body 0", None),
        (1, b"body 1", None),
    ]
    assert jobs[0].recipients == ((0, "r0@example.com"), (1, "r1@example.com"))
    assert await _status(ctx, items[0].id) == ("sending", "w1")
    async with ctx.db.transaction() as tx:
        await q.finish(tx, q.prepare_finish([_sent(jobs[0])], worker="w1"))
    assert await _status(ctx, items[0].id) == ("sent", None)
    assert await _written(ctx, items[0].id) == (["ok"], ["sent", "sent"])


def _sent(job: Job) -> Completion:
    now = datetime.now(UTC)
    record = AttemptRecord(
        started_at=now, finished_at=now, server_id=None, engine="smtp", outcome="sent",
        code=250, reply="ok", tls_version=None, duration_ms=1.0, possible_duplicate=False,
        transcript="",
    )  # fmt: skip
    return Completion(
        job=job, status=MessageStatus.SENT, next_attempt_at=None, possible_duplicate=False,
        held=False, last_error=None, attempt=record,
        recipients=tuple(
            RecipientUpdate(position, RecipientStatus.SENT, 250, "ok")
            for position, _ in job.recipients
        ),
    )  # fmt: skip


async def _written(ctx: Context, message_id: str) -> tuple[list[str], list[str]]:
    """The replies of a message's attempts and its recipients' states."""
    async with ctx.db.read() as tx:
        replies = (
            await tx.execute(select(attempts.c.reply).where(attempts.c.message_id == message_id))
        ).all()
        states = (
            await tx.execute(
                select(message_recipients.c.status)
                .where(message_recipients.c.message_id == message_id)
                .order_by(message_recipients.c.position)
            )
        ).all()
    return [r[0] for r in replies], [s[0] for s in states]


async def test_the_workers_batches_and_outcomes_written_unless_a_tenant_has_a_webhook(
    ctx: Context,
) -> None:
    """The worker's own transactions (plain connections on both databases): claim, load, and
    outcomes written alone, which writes nothing and says so while the tenant has an
    active webhook endpoint (its events must be committed with the outcomes)."""
    q, items = await _queued(ctx, 3, recipients=2)
    rows = await q.claim_batch(ctx.db, worker="w1", limit=2, lease=LEASE)
    jobs = await q.load_batch(ctx.db, rows)
    assert [(j.id, j.raw, j.attempt, j.recipients) for j in jobs] == [
        (m.id, m.raw, 1, ((0, "r0@example.com"), (1, "r1@example.com"))) for m in items[:2]
    ]
    tenant_id = items[0].tenant_id
    hook_id, now = new_id(), datetime.now(UTC)
    async with ctx.db.transaction() as tx:
        await tx.execute(
            insert(webhooks).values(
                id=hook_id, tenant_id=tenant_id, url="https://hooks.example.com/", events=[],
                status="active", secrets=b"sealed", created_at=now, updated_at=now,
            )
        )  # fmt: skip
    first = q.prepare_finish([_sent(jobs[0])], worker="w1")
    assert not await q.finish_alone(ctx.db, first, tenant_ids=[tenant_id])
    assert await _status(ctx, items[0].id) == ("sending", "w1")
    assert await _written(ctx, items[0].id) == ([], ["pending", "pending"])
    async with ctx.db.transaction() as tx:
        await tx.execute(update(webhooks).values(status="disabled"))
    # The refused transaction left the connection usable: the next write goes through.
    assert await q.finish_alone(ctx.db, first, tenant_ids=[tenant_id])
    both = q.prepare_finish([_sent(jobs[1])], worker="w1")
    assert await q.finish_alone(ctx.db, both, tenant_ids=[tenant_id])
    for item in items[:2]:
        assert await _status(ctx, item.id) == ("sent", None)
        assert await _written(ctx, item.id) == (["ok"], ["sent", "sent"])
    assert await _status(ctx, items[2].id) == ("queued", None)


async def test_finish_by_a_worker_that_lost_its_lease_changes_nothing(ctx: Context) -> None:
    q, items = await _queued(ctx, 1)
    async with ctx.db.transaction() as tx:
        (job,) = await q.load(tx, await q.claim(tx, worker="w1", limit=1, lease=LEASE))
        await q.release(tx, [job.id], worker="w1", when=datetime.now(UTC), possible_duplicate=True)
        (again,) = await q.load(tx, await q.claim(tx, worker="w2", limit=1, lease=LEASE))
    assert again.possible_duplicate and again.attempt == 2
    late = Completion(
        job=job, status=MessageStatus.FAILED, next_attempt_at=None, possible_duplicate=False,
        held=False, last_error="late", attempt=None,
    )  # fmt: skip
    async with ctx.db.transaction() as tx:
        await q.finish(tx, q.prepare_finish([late], worker="w1"))
    assert await _status(ctx, items[0].id) == ("sending", "w2")


async def test_expired_leases_are_reclaimed_and_live_ones_renewed(ctx: Context) -> None:
    q, items = await _queued(ctx, 2)
    async with ctx.db.transaction() as tx:
        await q.claim(tx, worker="dead", limit=1, lease=timedelta(seconds=-1))
        await q.claim(tx, worker="alive", limit=1, lease=timedelta(seconds=-1))
        assert await q.renew(tx, worker="alive", lease=LEASE) == 1
        assert await q.reclaim_expired(tx) == 1
    assert await _status(ctx, items[0].id) == ("deferred", None)
    assert await _status(ctx, items[1].id) == ("sending", "alive")
    async with ctx.db.transaction() as tx:
        (job,) = await q.load(tx, await q.claim(tx, worker="next", limit=5, lease=LEASE))
    assert (job.id, job.possible_duplicate) == (items[0].id, True)


async def test_held_release_uncounts_and_takes_the_message_off_the_queue(ctx: Context) -> None:
    q, items = await _queued(ctx, 1)
    async with ctx.db.transaction() as tx:
        jobs = await q.load(tx, await q.claim(tx, worker="w", limit=1, lease=LEASE))
        await q.release(
            tx, [j.id for j in jobs], worker="w", when=datetime.now(UTC), possible_duplicate=False,
            uncount=True, held=True,
        )  # fmt: skip
        assert await q.claim(tx, worker="w", limit=1, lease=LEASE) == []
    async with ctx.db.read() as tx:
        row = (
            await tx.execute(
                select(messages.c.attempts, messages.c.held).where(messages.c.id == items[0].id)
            )
        ).one()
    assert (row[0], bool(row[1])) == (0, True)


async def test_a_row_without_its_body_loads_as_a_fault(ctx: Context) -> None:
    q, items = await _queued(ctx, 2)
    async with ctx.db.transaction() as tx:
        await tx.execute(delete(message_bodies).where(message_bodies.c.message_id == items[0].id))
        rows = await q.claim(tx, worker="w", limit=2, lease=LEASE)
    async with ctx.db.read() as tx:
        broken, fine = await q.load(tx, rows)
    assert broken.fault == "quarantined: the message cannot be loaded: its stored body is missing"
    assert broken.recipients == ((0, "r0@example.com"),)
    assert (fine.fault, fine.raw) == (None, b"body 1")


async def test_notify_is_accepted_on_both(ctx: Context) -> None:
    q = queue_for(ctx.db.dialect)
    async with ctx.db.transaction() as tx:
        await q.notify(tx)


async def _queue_holds(ctx: Context, tenant_id: str) -> int:
    async with ctx.db.read() as tx:
        count = await tx.execute(
            select(func.count()).select_from(messages).where(messages.c.tenant_id == tenant_id)
        )
        return int(count.scalar_one())


async def test_accepted_mail_is_written_alone_unless_a_quota_counts_it(ctx: Context) -> None:
    """Mail alone is committed in one hand-over to the database; a tenant or app quota must
    be counted in the accepting transaction, so then nothing is written and the caller takes
    the full way."""
    tenant_id, now = await _tenant(ctx), datetime.now(UTC)
    first = [_message(tenant_id, n, recipients=2) for n in range(3)]
    async with ctx.db.transaction() as tx:  # a policy without a quota counts nothing
        await tx.execute(
            insert(tenant_policies).values(tenant_id=tenant_id, retention_days={}, updated_at=now)
        )
    assert await queue.enqueue_alone(ctx.db, first, tenant_id=tenant_id, now=now)
    assert await _queue_holds(ctx, tenant_id) == 3
    q = queue_for(ctx.db.dialect)
    jobs = await q.load_batch(ctx.db, await q.claim_batch(ctx.db, worker="w", limit=5, lease=LEASE))
    assert sorted((j.raw, j.recipients) for j in jobs) == sorted(
        (m.raw, ((0, "r0@example.com"), (1, "r1@example.com"))) for m in first
    )
    app_id = new_id()
    async with ctx.db.transaction() as tx:
        await tx.execute(
            insert(apps).values(
                id=app_id, tenant_id=tenant_id, name="shop", created_at=now, updated_at=now
            )
        )
        await tx.execute(
            insert(app_quotas).values(
                app_id=app_id, tenant_id=tenant_id, quota_per_day=10, updated_at=now
            )
        )
    second = [_message(tenant_id, 9)]
    assert not await queue.enqueue_alone(ctx.db, second, tenant_id=tenant_id, now=now)
    async with ctx.db.transaction() as tx:
        await tx.execute(delete(app_quotas))
        await tx.execute(update(tenant_policies).values(quota_per_minute=5))
    assert not await queue.enqueue_alone(ctx.db, second, tenant_id=tenant_id, now=now)
    assert await _queue_holds(ctx, tenant_id) == 3
    # Nothing half-written: the refused transaction left the connection usable.
    async with ctx.db.transaction() as tx:
        await tx.execute(update(tenant_policies).values(quota_per_minute=None))
    assert await queue.enqueue_alone(ctx.db, second, tenant_id=tenant_id, now=now)
    assert await _queue_holds(ctx, tenant_id) == 4
