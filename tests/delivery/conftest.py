"""Fixtures for delivery tests: a tenant ready to send, and a worker to drain the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from mailgate.engines.factory import EngineCache
from mailgate.runtime import Context
from mailgate.storage.base import utcnow
from mailgate.storage.tables import messages
from mailgate.worker.runner import Worker, WorkerOptions
from tests.config.helpers import bearer, new_tenant
from tests.conftest import ADMIN
from tests.support.smtp_servers import LoopbackDialer

T = "/api/v1/tenants/acme"


@dataclass
class Tenant:
    client: httpx.AsyncClient
    ctx: Context
    sender: dict[str, str]

    async def server(self, port: int, **extra: Any) -> dict[str, Any]:
        body = {
            "name": extra.pop("name", f"relay-{port}"),
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "stages": ["production"],
            "is_default": True,
            **extra,
        }
        r = await self.client.post(f"{T}/mail-servers", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def send(self, **fields: Any) -> httpx.Response:
        body = {"to": ["rcpt@example.com"], "subject": "Hi", "text": "Hello.", **fields}
        return await self.client.post(f"{T}/messages", json=body, headers=self.sender)

    async def send_ok(self, **fields: Any) -> str:
        r = await self.send(**fields)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    async def message(self, message_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{T}/messages/{message_id}", headers=ADMIN)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
async def tenant(client: httpx.AsyncClient, ctx: Context) -> Tenant:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert capture.status_code == 201
    r = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": capture.json()["id"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    await client.post(f"{T}/apps", json={"name": "billing"}, headers=ADMIN)
    token = await client.post(f"{T}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN)
    # Loopback SMTP fakes are only reachable through the allow-list.
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    return Tenant(client, ctx, bearer(token.json()["token"]))


FAST = WorkerOptions(flush_interval=0.005, poll_interval=0.05, reclaim_interval=0.2)


async def _busy(ctx: Context) -> bool:
    now = utcnow()
    async with ctx.db.read() as tx:
        rows = (
            await tx.execute(
                select(messages.c.id).where(
                    (messages.c.status == "sending")
                    | (
                        (messages.c.next_attempt_at.is_not(None))
                        & (messages.c.next_attempt_at <= now)
                    )
                )
            )
        ).all()
    return bool(rows)


async def drain(
    ctx: Context,
    *,
    engines: EngineCache | None = None,
    timeout: float = 20.0,
    options: WorkerOptions = FAST,
) -> Worker:
    """Run one worker until nothing is due or being sent, then stop it gracefully."""
    own = engines is None
    cache = engines or EngineCache(dialer=LoopbackDialer())
    worker = Worker(ctx, engines=cache, options=options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout
    try:
        await asyncio.sleep(0.05)
        while await _busy(ctx):
            assert time.monotonic() < deadline, "the queue did not drain in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        if own:
            await cache.aclose()
    return worker


async def make_due(ctx: Context) -> None:
    """Bring every deferred, not held message forward to now (skip the backoff)."""
    async with ctx.db.transaction() as tx:
        await tx.execute(
            update(messages)
            .where(messages.c.next_attempt_at.is_not(None))
            .values(next_attempt_at=utcnow())
        )


@pytest.fixture
async def engines() -> AsyncIterator[EngineCache]:
    cache = EngineCache(dialer=LoopbackDialer())
    yield cache
    await cache.aclose()


@pytest.fixture(autouse=True)
def _reap_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Kill any subprocess a test started and left running (a failed assertion mid-way)."""
    import subprocess

    started: list[subprocess.Popen[bytes]] = []
    original = subprocess.Popen.__init__

    def tracking_init(self: subprocess.Popen[bytes], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(subprocess.Popen, "__init__", tracking_init)
    yield
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
