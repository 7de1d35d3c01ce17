"""An IMAP server that lies about sizes: what it sends is bounded by the sync's limits."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, sync_account
from mailgate.runtime import Context
from tests.conftest import ADMIN
from tests.inbound.conftest import T
from tests.inbound.fake_imap import loopback_dialer, one_message_server, store_for
from tests.support.tls import TestCA

#: The octets the server claims for its one message's body, and then starts to send.
CLAIMED = 2_000_000_000
SENT = 4 * 1024 * 1024


@pytest.fixture
async def liar_port(trust_ca: TestCA) -> AsyncIterator[int]:
    """Implicit TLS; one message said to be 100 octets whose BODY[] is an endless literal."""

    async def endless(writer: asyncio.StreamWriter) -> bool:
        writer.write(b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % CLAIMED)
        chunk = b"x" * 65536
        for _ in range(SENT // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        return False  # never finishes the literal

    async with one_message_server(trust_ca, "liar", endless) as port:
        yield port


async def test_a_literal_beyond_the_size_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, ctx: Context, liar_port: int
) -> None:
    store = await store_for(client, ctx, liar_port)
    dialer = loopback_dialer()
    started = time.monotonic()
    with pytest.raises(ImapSyncError) as caught:
        await sync_account(store, dialer=dialer, options=SyncOptions(timeout=5, max_bytes=4096))
    assert caught.value.code is SyncErrorCode.PROTOCOL_ERROR
    assert re.search(r"literal of 2000000000 octets", caught.value.message)
    assert time.monotonic() - started < 4
    r = await client.get(f"{T}/email-accounts/{store.account_id}/inbox", headers=ADMIN)
    assert r.status_code == 200 and r.json()["items"] == []


@pytest.fixture
async def trickle_port(trust_ca: TestCA) -> AsyncIterator[int]:
    """Implicit TLS; an honest 100-octet message whose body comes a byte every 50 ms, so no
    single read ever waits long enough for the per-read timeout."""

    async def trickle(writer: asyncio.StreamWriter) -> bool:
        writer.write(b"* 1 FETCH (UID 1 BODY[] {100}\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b")\r\n")
        return True

    async with one_message_server(trust_ca, "trickle", trickle) as port:
        yield port


async def test_a_server_that_answers_a_byte_at_a_time_meets_the_sync_deadline(
    client: httpx.AsyncClient, ctx: Context, trickle_port: int
) -> None:
    store = await store_for(client, ctx, trickle_port)
    dialer = loopback_dialer()
    started = time.monotonic()
    with pytest.raises(ImapSyncError) as caught:
        await sync_account(store, dialer=dialer, options=SyncOptions(timeout=5, deadline=1.5))
    assert caught.value.code is SyncErrorCode.TIMEOUT
    assert "longer than 1.5 s" in caught.value.message
    assert time.monotonic() - started < 4  # the 5 s body would have taken longer
    r = await client.get(f"{T}/email-accounts/{store.account_id}", headers=ADMIN)
    assert "timeout" in (r.json().get("last_sync_error") or "")
    # The lease is free again: the next sync may start at once.
    with pytest.raises(ImapSyncError):
        await sync_account(store, dialer=dialer, options=SyncOptions(timeout=5, deadline=0.5))
