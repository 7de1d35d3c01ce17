"""Enqueue writes a batch with one executemany per table: every message, body and
recipient of a batch arrives intact."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from mailgate.runtime import Context
from mailgate.storage.queue import queue_for
from mailgate.storage.tables import message_bodies, message_recipients, messages
from tests.storage.test_queue import _message, _tenant


async def test_a_batch_arrives_whole(ctx: Context) -> None:
    tenant_id = await _tenant(ctx)
    count = 207
    items = [_message(tenant_id, n, recipients=1 + n % 3) for n in range(count)]
    async with ctx.db.transaction() as tx:
        await queue_for(ctx.db.dialect).enqueue(tx, items, now=datetime.now(UTC))
    async with ctx.db.read() as tx:
        rows = {r.id: r for r in await tx.execute(select(messages))}
        bodies = dict((await tx.execute(select(message_bodies))).all())
        recipients = (
            await tx.execute(
                select(message_recipients.c.message_id, func.count()).group_by(
                    message_recipients.c.message_id
                )
            )
        ).all()
    assert len(rows) == count
    for item in items:
        row = rows[item.id]
        assert (row.subject, row.message_id, row.status) == (
            item.subject,
            item.message_id,
            "queued",
        )
        assert bytes(bodies[item.id]) == item.raw
        assert row.size == len(item.raw)
    assert dict(recipients) == {m.id: len(m.recipients) for m in items}
