"""An IMAP server that lies about sizes: what it sends is bounded by the sync's limits."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from mailgate.engines.guarded_dialer import GuardedDialer
from mailgate.engines.netpolicy import NetworkPolicy
from mailgate.inbound.errors import ImapSyncError, SyncErrorCode
from mailgate.inbound.sync import SyncOptions, sync_account
from mailgate.runtime import Context
from mailgate.storage.inbound import InboundStore
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN
from tests.inbound.conftest import T
from tests.support.tls import TestCA

#: The octets the server claims for its one message's body, and then starts to send.
CLAIMED = 2_000_000_000
SENT = 4 * 1024 * 1024


@pytest.fixture
async def liar_port(trust_ca: TestCA) -> AsyncIterator[int]:
    """Implicit TLS; one message said to be 100 octets whose BODY[] is an endless literal."""
    context = trust_ca.issue("127.0.0.1", label="liar").server_context()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] liar ready\r\n")
        try:
            while line := await reader.readline():
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                command = rest.upper()
                if command.startswith(b"CAPABILITY"):
                    writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                elif command.startswith((b"EXAMINE", b"SELECT")):
                    writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n")
                    writer.write(b"* OK [UIDNEXT 2] ok\r\n")
                elif command.startswith(b"UID SEARCH"):
                    writer.write(b"* SEARCH 1\r\n")
                elif command.startswith(b"UID FETCH") and b"BODY.PEEK" in command:
                    writer.write(b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % CLAIMED)
                    chunk = b"x" * 65536
                    for _ in range(SENT // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                    continue  # never finishes the literal
                elif command.startswith(b"UID FETCH"):
                    writer.write(
                        b'* 1 FETCH (UID 1 RFC822.SIZE 100 INTERNALDATE "01-Jan-2026 10:00:00'
                        b' +0000")\r\n'
                    )
                writer.write(tag + b" OK done\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _store(client: httpx.AsyncClient, ctx: Context, port: int) -> InboundStore:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    r = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": capture.json()["id"],
            "imap": {"host": "127.0.0.1", "port": port, "username": "u", "password": "pw-1234"},
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    tenant = await client.get(T, headers=ADMIN)
    return InboundStore(ctx.db, ctx.box, tenant_id=tenant.json()["id"], account_id=r.json()["id"])


async def test_a_literal_beyond_the_size_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, ctx: Context, liar_port: int
) -> None:
    store = await _store(client, ctx, liar_port)
    dialer = GuardedDialer(NetworkPolicy(["127.0.0.1/32"]))
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
    context = trust_ca.issue("127.0.0.1", label="trickle").server_context()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] trickle ready\r\n")
        try:
            while line := await reader.readline():
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                command = rest.upper()
                if command.startswith(b"CAPABILITY"):
                    writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                elif command.startswith((b"EXAMINE", b"SELECT")):
                    writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n")
                    writer.write(b"* OK [UIDNEXT 2] ok\r\n")
                elif command.startswith(b"UID SEARCH"):
                    writer.write(b"* SEARCH 1\r\n")
                elif command.startswith(b"UID FETCH") and b"BODY.PEEK" in command:
                    writer.write(b"* 1 FETCH (UID 1 BODY[] {100}\r\n")
                    for _ in range(100):
                        writer.write(b"x")
                        await writer.drain()
                        await asyncio.sleep(0.05)
                    writer.write(b")\r\n")
                elif command.startswith(b"UID FETCH"):
                    writer.write(
                        b'* 1 FETCH (UID 1 RFC822.SIZE 100 INTERNALDATE "01-Jan-2026 10:00:00'
                        b' +0000")\r\n'
                    )
                writer.write(tag + b" OK done\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_server_that_answers_a_byte_at_a_time_meets_the_sync_deadline(
    client: httpx.AsyncClient, ctx: Context, trickle_port: int
) -> None:
    store = await _store(client, ctx, trickle_port)
    dialer = GuardedDialer(NetworkPolicy(["127.0.0.1/32"]))
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
