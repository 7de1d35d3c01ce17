"""Composed bytes live in ``message_bodies``; migration 0005 moves them without losing a row."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import func, select, text

from mailgate.storage import messages as message_store
from mailgate.storage import migrate
from mailgate.storage.tables import message_bodies, message_recipients, messages
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant
from tests.delivery.test_durability import _enqueue


async def _bodies(tenant: Tenant) -> dict[str, bytes]:
    async with tenant.ctx.db.read() as tx:
        ids = [r[0] for r in await tx.execute(select(messages.c.id))]
        tenant_id = (await tx.execute(select(messages.c.tenant_id))).scalars().first()
        assert tenant_id is not None
        return {i: await message_store.raw_of(tx, tenant_id, i) for i in ids}


async def _count(tenant: Tenant, table: Any) -> int:
    async with tenant.ctx.db.read() as tx:
        return int((await tx.execute(select(func.count()).select_from(table))).scalar_one())


async def _migrate(tenant: Tenant, action: str, revision: str) -> None:
    def run(sync_conn: Any) -> None:
        getattr(command, action)(migrate.alembic_config(sync_conn), revision)

    async with tenant.ctx.db.engine.begin() as conn:
        await conn.run_sync(run)


async def test_raw_is_served_from_message_bodies(tenant: Tenant) -> None:
    await _enqueue(tenant, 3)
    bodies = await _bodies(tenant)
    assert len(bodies) == 3
    assert await _count(tenant, message_bodies) == 3
    some_id = next(iter(bodies))
    r = await tenant.client.get(f"{T}/messages/{some_id}/raw", headers=ADMIN)
    assert r.status_code == 200
    assert r.content == bodies[some_id]
    assert b"Subject: n" in r.content


async def test_migration_round_trip_keeps_every_body_and_recipient(tenant: Tenant) -> None:
    await _enqueue(tenant, 5)
    before = await _bodies(tenant)
    recipients = await _count(tenant, message_recipients)
    assert recipients == 5

    await _migrate(tenant, "downgrade", "0004")
    async with tenant.ctx.db.read() as tx:
        inline = dict((await tx.execute(text("SELECT id, raw FROM messages"))).all())
    assert {k: bytes(v) for k, v in inline.items()} == before

    await _migrate(tenant, "upgrade", "head")
    assert await migrate.current_revision(tenant.ctx.db) == migrate.head_revision()
    assert await _bodies(tenant) == before
    # Dropping the column must not have dropped and re-created ``messages``: with foreign
    # keys on, that deletes every row that cascades from it.
    assert await _count(tenant, message_recipients) == recipients
    assert await _count(tenant, message_bodies) == 5
