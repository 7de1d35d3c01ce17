"""Scripted IMAP servers for the hostile-server tests, and the account that points at them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.runtime import Context
from mailgate.storage.inbound import InboundStore
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN
from tests.inbound.conftest import T
from tests.support.tls import TestCA

#: Writes the BODY[] of the one message; True when the literal was completed.
BodyWriter = Callable[[asyncio.StreamWriter], Awaitable[bool]]


def loopback_dialer() -> GuardedDialer:
    return GuardedDialer(NetworkPolicy(["127.0.0.1/32"]))


@asynccontextmanager
async def one_message_server(ca: TestCA, label: str, body: BodyWriter) -> AsyncIterator[int]:
    """Implicit TLS on a free loopback port: one message (UID 1, said to be 100 octets)
    whose BODY[] is whatever ``body`` writes; every other command is answered plainly."""
    context = ca.issue("127.0.0.1", label=label).server_context()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] %s ready\r\n" % label.encode())
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
                    if not await body(writer):
                        continue  # the literal never ends: no tagged answer either
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
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def store_for(client: httpx.AsyncClient, ctx: Context, port: int) -> InboundStore:
    """Tenant ``acme`` with an account whose inbox is the server on ``port``."""
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
