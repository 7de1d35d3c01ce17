"""Manual sync is rate-limited per principal and per tenant, before anything is dialled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from mailgate.errors import RateLimited
from mailgate.services.ratelimit import (
    SYNCS_PER_PRINCIPAL,
    ProbeRateLimit,
    SyncLimits,
    SyncRateLimit,
)
from tests.config.helpers import new_tenant, token_for
from tests.conftest import ADMIN
from tests.inbound.conftest import Inbox, T


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts connections and hangs up on each."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def _on_client(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def settled(self) -> int:
        """The count once connections already queued by the kernel have been accepted."""
        await asyncio.sleep(0.1)
        return self.accepted


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    counting = CountingListener()
    server = await asyncio.start_server(counting._on_client, "127.0.0.1", 0)
    counting.port = int(server.sockets[0].getsockname()[1])
    try:
        yield counting
    finally:
        server.close()
        await server.wait_closed()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_sync_past_the_limit_is_429_and_dials_nothing(
    inbox: Inbox, listener: CountingListener
) -> None:
    admin = await token_for(inbox.client, "acme", "admin")
    for _ in range(SYNCS_PER_PRINCIPAL):
        r = await inbox.sync(admin)
        assert r.status_code == 200, r.text
    # Point the inbox at a listener that counts: a sync that dials shows up there.
    await inbox.set_imap(host="127.0.0.1", port=listener.port)

    r = await inbox.sync(admin)
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    problem = r.json()
    assert problem["status"] == 429
    assert "inbox syncs" in problem["detail"] and "you may start 6" in problem["detail"]
    assert await listener.settled() == 0

    # Another principal of the tenant has its own allowance: its sync dials (and fails).
    r = await inbox.sync(ADMIN)
    assert r.status_code == 502, r.text
    assert await listener.settled() == 1


async def test_requests_refused_before_the_limit_do_not_count(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert server.status_code == 201, server.text
    account = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": server.json()["id"],
        },
        headers=ADMIN,
    )
    assert account.status_code == 201, account.text
    url = f"{T}/email-accounts/{account.json()['id']}/sync"
    for _ in range(SYNCS_PER_PRINCIPAL + 2):
        r = await client.post(url, headers=ADMIN)
        assert r.status_code == 422, r.text  # no IMAP inbox: refused, never 429
        r = await client.post(f"{T}/email-accounts/no-such-account/sync", headers=ADMIN)
        assert r.status_code == 404, r.text


def test_sync_limits_per_principal_and_per_tenant() -> None:
    clock = FakeClock()
    limits = SyncRateLimit(SyncLimits(per_principal=2, per_tenant=3), clock=clock)
    limits.acquire(principal="a", tenant="t")
    limits.acquire(principal="a", tenant="t")
    with pytest.raises(RateLimited) as principal_limited:
        limits.acquire(principal="a", tenant="t")
    assert principal_limited.value.retry_after == 60
    assert principal_limited.value.detail.startswith("Too many inbox syncs: you may start 2")
    limits.acquire(principal="b", tenant="t")
    clock.now += 30.2
    with pytest.raises(RateLimited) as tenant_limited:
        limits.acquire(principal="c", tenant="t")
    assert "this tenant may start 3" in tenant_limited.value.detail
    assert tenant_limited.value.retry_after == 30  # 29.8 s, rounded up
    limits.acquire(principal="c", tenant="u")
    clock.now += 30
    limits.acquire(principal="a", tenant="t")


def test_sync_and_probe_limits_are_counted_apart() -> None:
    clock = FakeClock()
    syncs = SyncRateLimit(clock=clock)
    probes = ProbeRateLimit(clock=clock)
    for _ in range(SYNCS_PER_PRINCIPAL):
        syncs.acquire(principal="a", tenant="t")
    with pytest.raises(RateLimited):
        syncs.acquire(principal="a", tenant="t")
    probes.acquire(principal="a", tenant="t")  # probing is not held back by syncing
    defaults = SyncLimits()
    assert (defaults.per_principal, defaults.per_tenant, defaults.window_seconds) == (6, 20, 60.0)
    assert defaults.action == "inbox syncs"
