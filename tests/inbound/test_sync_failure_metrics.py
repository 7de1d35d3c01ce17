"""Failed IMAP syncs are counted in /metrics and shown on the account, with real failures:
Dovecot refusing a wrong password, and a loopback server that closes every connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select

from mailgate.storage.tables import tenants
from mailgate.worker.imap_sync import ImapSyncScheduler, SchedulerOptions
from tests.conftest import ADMIN
from tests.delivery.test_ops_metrics import _samples, _value
from tests.inbound.conftest import Inbox


async def _tenant_id(inbox: Inbox) -> str:
    async with inbox.ctx.db.read() as tx:
        return str(
            (await tx.execute(select(tenants.c.id).where(tenants.c.slug == "acme"))).one()[0]
        )


async def _metric(inbox: Inbox, name: str, tenant_id: str) -> float:
    text = (await inbox.client.get("/metrics")).text
    return _value(_samples(text), name, tenant=tenant_id) or 0.0


@asynccontextmanager
async def _closing_server() -> AsyncIterator[int]:
    """A loopback server that accepts connections and closes them at once."""

    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refused_password_is_counted_and_shown_on_the_account(inbox: Inbox) -> None:
    tenant_id = await _tenant_id(inbox)
    before = await _metric(inbox, "mailgate_imap_sync_failures_total", tenant_id)
    await inbox.set_imap(password="not-the-password")
    scheduler = ImapSyncScheduler(inbox.ctx, options=SchedulerOptions(interval=60))
    assert await scheduler.run_once() == 0
    assert await _metric(inbox, "mailgate_imap_sync_failures_total", tenant_id) == before + 1
    assert await _metric(inbox, "mailgate_imap_accounts_failing", tenant_id) == 1
    account = (await inbox.client.get(inbox.url, headers=ADMIN)).json()
    assert account["last_sync_error"].startswith("auth_failed")
    assert "not-the-password" not in (await inbox.client.get("/metrics")).text
    # Fixed, the next sync succeeds: the failing gauge drops, the counter stays.
    await inbox.set_imap()
    await inbox.sync_ok()
    assert await _metric(inbox, "mailgate_imap_accounts_failing", tenant_id) == 0
    assert await _metric(inbox, "mailgate_imap_sync_failures_total", tenant_id) == before + 1


async def test_a_server_that_closes_the_connection_is_counted_on_sync_now(inbox: Inbox) -> None:
    tenant_id = await _tenant_id(inbox)
    before = await _metric(inbox, "mailgate_imap_sync_failures_total", tenant_id)
    async with _closing_server() as port:
        await inbox.set_imap(host="127.0.0.1", port=port, security="tls")
        r = await inbox.sync()
    assert r.status_code >= 400, r.text
    assert await _metric(inbox, "mailgate_imap_sync_failures_total", tenant_id) == before + 1
    account = (await inbox.client.get(inbox.url, headers=ADMIN)).json()
    assert account["last_sync_error"], account
    assert await _metric(inbox, "mailgate_imap_accounts_failing", tenant_id) == 1
