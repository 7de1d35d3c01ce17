"""A server that greets and then says nothing: timeouts bound the sync, cancellation is prompt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, sync_account
from mailgate.runtime import Context
from mailgate.storage.tables import inbound_sync_leases
from tests.inbound.fake_imap import loopback_dialer, store_for
from tests.support.tls import TestCA


@pytest.fixture
async def silent_port(trust_ca: TestCA) -> AsyncIterator[int]:
    """Implicit TLS, a greeting and CAPABILITY, then silence: LOGIN is never answered."""
    context = trust_ca.issue("127.0.0.1", label="silent").server_context()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK silent server ready\r\n")
        await writer.drain()
        try:
            while line := await reader.readline():
                tag, _, command = line.partition(b" ")
                if command.strip().upper() == b"CAPABILITY":
                    writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _lease_owner(ctx: Context) -> str | None:
    async with ctx.db.read() as tx:
        owner = (await tx.execute(select(inbound_sync_leases.c.owner))).scalar_one_or_none()
    return str(owner) if owner is not None else None


async def test_an_unanswered_command_times_out(
    client: httpx.AsyncClient, ctx: Context, silent_port: int
) -> None:
    store = await store_for(client, ctx, silent_port)
    started = time.monotonic()
    with pytest.raises(ImapSyncError) as caught:
        await sync_account(store, dialer=loopback_dialer(), options=SyncOptions(timeout=0.5))
    assert caught.value.code is SyncErrorCode.TIMEOUT
    assert "login" in caught.value.message
    assert time.monotonic() - started < 10
    assert await _lease_owner(ctx) is None


async def test_a_cancelled_sync_releases_its_lease_at_once(
    client: httpx.AsyncClient, ctx: Context, silent_port: int
) -> None:
    store = await store_for(client, ctx, silent_port)
    task = asyncio.create_task(
        sync_account(store, dialer=loopback_dialer(), options=SyncOptions(timeout=60))
    )
    for _ in range(100):
        if await _lease_owner(ctx):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # LOGIN sent, waiting for an answer that never comes
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 10
    assert await _lease_owner(ctx) is None
