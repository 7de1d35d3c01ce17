"""Fixtures for SMTP submission tests: a tenant ready to send, and the real listener on
127.0.0.1 (a free port), with aiosmtplib as the client."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from mailgate.runtime import Context
from mailgate.submission import SubmissionConfig, SubmissionServer, serve_submission
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, tenant
from tests.support.tls import CertFiles, TestCA

__all__ = ["tenant"]

LOCAL = "127.0.0.1"
SLUG = "acme"
SENDER = "noreply@acme.example"
QUEUED = re.compile(r"2\.0\.0 Ok: queued as ([0-9a-z]{26})")

Serve = Callable[..., AbstractAsyncContextManager[SubmissionServer]]


def token_of(tenant: Tenant) -> str:
    """The tenant's sender token (the ``tenant`` fixture's bearer header)."""
    return tenant.sender["Authorization"].removeprefix("Bearer ")


async def new_token(
    client: httpx.AsyncClient, role: str, *, slug: str = SLUG, app: str | None = None
) -> str:
    body: dict[str, Any] = {"name": f"smtp-{role}", "role": role}
    if app is not None:
        body["app"] = app
    r = await client.post(f"/api/v1/tenants/{slug}/tokens", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def queued_id(reply: str) -> str:
    """The Mailgate message id in a ``250 2.0.0 Ok: queued as ID`` reply."""
    match = QUEUED.search(reply)
    assert match is not None, reply
    return match.group(1)


def message(
    *,
    to: str = "a@example.com",
    extra: str = "",
    body: str = "Hello from an app.\r\n",
    sender: str = f"Acme Billing <{SENDER}>",
) -> bytes:
    """A small, valid RFC 5322 message (CRLF line ends)."""
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Invoice 7\r\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <inv-7@app.acme.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    )
    return (head + extra + "\r\n" + body).encode()


@pytest.fixture
async def serve(ctx: Context) -> AsyncIterator[Serve]:
    """Start listeners on 127.0.0.1 (port 0 unless given); every one is stopped at the end."""
    started: list[SubmissionServer] = []

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[SubmissionServer]:
        config = SubmissionConfig(
            **{"host": LOCAL, "port": 0, "hostname": "submit.mailgate.test", **overrides}
        )
        server = await serve_submission(ctx, config)
        started.append(server)
        try:
            yield server
        finally:
            await server.stop()

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def plain(serve: Serve) -> AsyncIterator[SubmissionServer]:
    """A listener on loopback without TLS (AUTH allowed in clear: loopback)."""
    async with serve() as server:
        yield server


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def cert(ca: TestCA) -> CertFiles:
    return ca.issue(LOCAL)


def client(port: int, **kwargs: Any) -> aiosmtplib.SMTP:
    """An aiosmtplib client for 127.0.0.1:port that does no STARTTLS unless told to."""
    options: dict[str, Any] = {"start_tls": False, "timeout": 10, **kwargs}
    return aiosmtplib.SMTP(hostname=LOCAL, port=port, local_hostname="app.acme.test", **options)


async def send(
    port: int,
    data: bytes,
    *,
    token: str,
    rcpts: list[str] | None = None,
    username: str = SLUG,
    mail_from: str = SENDER,
    mail_options: list[str] | None = None,
) -> str:
    """Log in and send ``data``; the final reply's text."""
    async with client(port) as smtp:
        await smtp.login(username, token)
        _errors, reply = await smtp.sendmail(
            mail_from, rcpts or ["a@example.com"], data, mail_options=mail_options
        )
    return reply


async def stored(tenant: Tenant, message_id: str) -> dict[str, Any]:
    return await tenant.message(message_id)


async def raw_of(tenant: Tenant, message_id: str) -> bytes:
    r = await tenant.client.get(f"{T}/messages/{message_id}/raw", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.content


async def message_count(tenant: Tenant) -> int:
    r = await tenant.client.get(f"{T}/messages", headers=ADMIN)
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


def unfolded_head(raw: bytes) -> list[str]:
    """The header fields of ``raw``, each unfolded onto one line (RFC 5322 section 2.2.3)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return head.replace("\r\n ", " ").replace("\r\n\t", "\t").split("\r\n")


async def raw_send(port: int, data: bytes, *, token: str, rcpt: str = "a@example.com") -> str:
    """Send ``data`` octet for octet (no client repairs line ends, as aiosmtplib does) and
    return the reply to the final dot, e.g. ``554 5.6.0 ...`` (lines joined with LF)."""
    reader, writer = await asyncio.open_connection(LOCAL, port)

    async def reply() -> str:
        lines = [await reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(await reader.readline())
        return "\n".join(line.decode().rstrip("\r\n") for line in lines)

    try:
        assert (await reply()).startswith("220")
        plain = base64.b64encode(f"\0{SLUG}\0{token}".encode())
        for command in (
            b"EHLO app.acme.test",
            b"AUTH PLAIN " + plain,
            f"MAIL FROM:<{SENDER}>".encode(),
            f"RCPT TO:<{rcpt}>".encode(),
            b"DATA",
        ):
            writer.write(command + b"\r\n")
            answer = await reply()
            assert answer[:1] in "23", (command[:4], answer)
        writer.write(data + b".\r\n")
        final = await reply()
        writer.write(b"QUIT\r\n")
        await reply()
    finally:
        writer.close()
        await writer.wait_closed()
    return final
