"""Two transactions listing the same address at once (two inbox syncs of one tenant, or a
sync and a SendGrid post): the second neither fails nor duplicates the entry."""

from __future__ import annotations

import asyncio

import pytest

from mailgate.domain.suppression import Reason, Source
from mailgate.errors import Conflict
from mailgate.runtime import Context
from mailgate.storage import tenants
from mailgate.storage.base import utcnow
from mailgate.storage.suppressions import NewSuppression, SuppressionRepo

NEW = NewSuppression(email="gone@example.net", reason=Reason.HARD_BOUNCE, source=Source.BOUNCE)


async def _race(ctx: Context, second_call: str) -> object:
    if ctx.db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite writers take turns (one host lock): no two writers at once")
    async with ctx.db.transaction() as tx:
        tenant = await tenants.create_tenant(tx, slug="acme", name="Acme")
    inside = asyncio.Event()

    async def second() -> object:
        await inside.wait()
        async with ctx.db.transaction() as tx:
            repo = SuppressionRepo(tx, tenant.id)
            if second_call == "add_automatic":
                return await repo.add_automatic(NEW, now=utcnow())
            return await repo.create(NEW, now=utcnow())

    task = asyncio.create_task(second())
    async with ctx.db.transaction() as tx:
        assert await SuppressionRepo(tx, tenant.id).add_automatic(NEW, now=utcnow()) is not None
        inside.set()
        await asyncio.sleep(0.5)  # the second transaction is blocked on the unique index
    try:
        return await task
    finally:
        async with ctx.db.read() as tx:
            entries = await SuppressionRepo(tx, tenant.id).all()
        assert [e.email for e in entries] == ["gone@example.net"]


async def test_a_concurrent_automatic_entry_is_skipped(ctx: Context) -> None:
    assert await _race(ctx, "add_automatic") is None


async def test_a_concurrent_manual_add_is_a_conflict(ctx: Context) -> None:
    with pytest.raises(Conflict):
        await _race(ctx, "create")
