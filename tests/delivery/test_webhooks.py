"""Webhook delivery end to end: events recorded with outcomes, signed POSTs to a real receiver.

The receiver is a minimal HTTP/1.1 server on 127.0.0.1 that checks every signature with the
endpoint's secret (computed here independently of Mailgate's code). The dispatcher's clock is
injected, so the 24-hour retry and disable windows are crossed without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.domain.webhooks import WebhookEvent
from mailgate.storage import queue
from mailgate.storage import webhooks as webhook_store
from mailgate.storage.base import utcnow
from mailgate.storage.tenants import get_tenant
from mailgate.worker.webhooks import Dispatcher, DispatcherOptions
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.support.tls import TestCA

SECRET = "canary-Hook-Secret-5d1e0b7a"


# A receiver speaking just enough HTTP/1.1 -----------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    fresh: bool

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    secret: str
    statuses: list[int] = field(default_factory=list)
    hang: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mailgate?k=1"

    def _verify(self, headers: dict[str, str], body: bytes) -> tuple[bool, bool]:
        stamp = headers.get("x-mailgate-timestamp", "")
        expected = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        ok = hmac.compare_digest(
            "sha256=" + expected.hexdigest(), headers.get("x-mailgate-signature", "")
        )
        return ok, stamp.isdigit() and abs(time.time() - int(stamp)) <= 300

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            ok, fresh = self._verify(headers, body)
            self.received.append(Received(request_line.split()[1], headers, body, ok, fresh))
            if self.hang:
                await asyncio.sleep(self.hang)
            status = self.statuses.pop(0) if self.statuses else 200
            reply = b"accepted" if status < 300 else b"boom " * 2000
            extra = "Location: http://127.0.0.1:1/elsewhere\r\n" if 300 <= status < 400 else ""
            writer.write(
                f"HTTP/1.1 {status} Status\r\nContent-Length: {len(reply)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode()
                + reply
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    @contextlib.asynccontextmanager
    async def running(self, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await server.wait_closed()


class Clock:
    """A settable clock for the dispatcher."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(SECRET)


async def _hook(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    payload = {"url": url, "events": ["message.sent"], "secret": SECRET, **body}
    r = await client.post(f"{T}/webhooks", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _deliveries(client: httpx.AsyncClient, hook_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{T}/webhooks/{hook_id}/deliveries", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _webhook(client: httpx.AsyncClient, hook_id: str) -> dict[str, Any]:
    r = await client.get(f"{T}/webhooks/{hook_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


# End to end ------------------------------------------------------------------------------


async def test_sent_message_reaches_the_receiver_signed(tenant: Tenant, receiver: Receiver) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        failed_only = await _hook(tenant.client, receiver.url, events=["message.failed"])
        message_id = await tenant.send_ok(to=["a@example.com", "b@example.com"])
        await drain(tenant.ctx)
        async with Dispatcher(tenant.ctx) as dispatcher:
            assert await dispatcher.run_once() == 2
            assert await dispatcher.run_once() == 0
    message = await tenant.message(message_id)
    assert [r.path for r in receiver.received] == ["/hooks/mailgate?k=1"] * 2
    assert all(r.signature_ok and r.fresh for r in receiver.received)
    events = sorted((r.json for r in receiver.received), key=lambda e: e["recipient"])
    assert [e["recipient"] for e in events] == ["a@example.com", "b@example.com"]
    first = events[0]
    assert first["type"] == "message.sent" and first["outcome"] == "sent"
    assert first["tenant"] == "acme"
    assert first["message"] == {"id": message_id, "message_id": message["message_id"]}
    assert first["code"] == 250 and first["attempt"] == 1
    assert events[0]["id"] != events[1]["id"]
    seen = receiver.received[0].headers
    assert seen["content-type"] == "application/json"
    assert seen["x-mailgate-event"] == "message.sent"
    assert seen["host"] == f"127.0.0.1:{receiver.port}"
    delivered = await _deliveries(tenant.client, hook["id"])
    assert {d["id"] for d in delivered} == {
        r.headers["x-mailgate-delivery"] for r in receiver.received
    }
    assert {d["status"] for d in delivered} == {"delivered"}
    assert {d["event_id"] for d in delivered} == {e["id"] for e in events}
    assert await _deliveries(tenant.client, failed_only["id"]) == []


async def test_events_follow_each_recipient_outcome(tenant: Tenant) -> None:
    hook = await _hook(
        tenant.client,
        "https://93.184.216.34/hook",
        events=["message.sent", "message.deferred", "message.failed"],
    )
    message_id = await tenant.send_ok(to=["s@example.com", "d@example.com", "f@example.com"])
    async with tenant.ctx.db.transaction() as tx:
        (job,) = await queue.claim(tx, worker="w", limit=1, lease=timedelta(seconds=60))
        outcomes = [("sent", 250, "ok"), ("deferred", 451, "later"), ("failed", 550, "no")]
        completion = queue.Completion(
            job=job,
            status=MessageStatus.DEFERRED,
            next_attempt_at=utcnow() + timedelta(minutes=5),
            possible_duplicate=False,
            held=False,
            last_error="later",
            attempt=None,
            recipients=tuple(
                queue.RecipientUpdate(pos, RecipientStatus(s), code, reply)
                for (pos, _), (s, code, reply) in zip(job.recipients, outcomes, strict=True)
            ),
        )
        assert await webhook_store.record_events(tx, [completion]) == 3
        assert await webhook_store.record_events(tx, []) == 0
    rows = await _deliveries(tenant.client, hook["id"])
    assert sorted(d["event"] for d in rows) == [
        "message.deferred",
        "message.failed",
        "message.sent",
    ]
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in rows)
    assert message_id


async def test_a_500_is_retried_with_backoff_then_delivered(
    tenant: Tenant, receiver: Receiver
) -> None:
    receiver.statuses = [500, 200]
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)
        clock = Clock()
        async with Dispatcher(tenant.ctx, clock=clock) as dispatcher:
            assert await dispatcher.run_once() == 1
            (pending,) = await _deliveries(tenant.client, hook["id"])
            assert pending["status"] == "pending" and pending["attempts"] == 1
            assert pending["last_status"] == 500
            assert pending["last_error"].startswith("HTTP 500: boom")
            assert len(pending["last_error"]) < 300  # a snippet, not the body
            wait = datetime.fromisoformat(pending["next_attempt_at"]) - clock.now
            assert timedelta(seconds=20) < wait < timedelta(seconds=40)  # 30 s +- 20 %
            assert (await _webhook(tenant.client, hook["id"]))["failing_since"] is not None
            assert await dispatcher.run_once() == 0  # not due yet
            clock.advance(seconds=45)
            assert await dispatcher.run_once() == 1
    (done,) = await _deliveries(tenant.client, hook["id"])
    assert done["status"] == "delivered" and done["attempts"] == 2
    assert (await _webhook(tenant.client, hook["id"]))["failing_since"] is None
    first, second = receiver.received
    assert first.headers["x-mailgate-delivery"] == second.headers["x-mailgate-delivery"]
    assert first.body == second.body and first.signature_ok and second.signature_ok


async def test_endpoint_failing_for_24_hours_is_disabled(
    tenant: Tenant, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await tenant.send_ok()
        await drain(tenant.ctx)
        clock = Clock()
        options = DispatcherOptions(batch_size=1)
        async with Dispatcher(tenant.ctx, clock=clock, options=options) as dispatcher:
            assert await dispatcher.run_once() == 1
            clock.advance(hours=12)
            assert await dispatcher.run_once() == 1
            assert (await _webhook(tenant.client, hook["id"]))["status"] == "active"
            clock.advance(hours=12, seconds=1)
            assert await dispatcher.run_once() == 1
            assert await dispatcher.run_once() == 0
    webhook = await _webhook(tenant.client, hook["id"])
    assert webhook["status"] == "disabled"
    assert "24 h" in webhook["disabled_reason"] and "HTTP 500" in webhook["disabled_reason"]
    assert {d["status"] for d in await _deliveries(tenant.client, hook["id"])} == {"failed"}
    assert len(receiver.received) == 3
    audit = (await tenant.client.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    assert "webhook.disable" in [e["action"] for e in audit]
    # A disabled endpoint gets no new events; enabling it resets the failure clock.
    await tenant.send_ok()
    await drain(tenant.ctx)
    assert len(await _deliveries(tenant.client, hook["id"])) == 2
    r = await tenant.client.post(f"{T}/webhooks/{hook['id']}/enable", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["disabled_reason"] is None
    assert r.json()["failing_since"] is None


async def test_allow_list_change_applies_at_delivery(tenant: Tenant, receiver: Receiver) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)
        allowed = tenant.ctx.policy
        tenant.ctx.policy = replace(allowed, allowed_networks=())
        clock = Clock()
        async with Dispatcher(tenant.ctx, clock=clock) as dispatcher:
            assert await dispatcher.run_once() == 1
            assert receiver.received == []
            (refused,) = await _deliveries(tenant.client, hook["id"])
            assert refused["status"] == "pending" and refused["last_status"] is None
            assert "network policy" in refused["last_error"]
            tenant.ctx.policy = allowed
            clock.advance(minutes=5)
            assert await dispatcher.run_once() == 1
    assert len(receiver.received) == 1


@pytest.mark.parametrize(("statuses", "hang"), [([302], 0.0), ([200], 2.0)])
async def test_redirects_are_not_followed_and_requests_time_out(
    tenant: Tenant, receiver: Receiver, statuses: list[int], hang: float
) -> None:
    receiver.statuses, receiver.hang = list(statuses), hang
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)
        options = DispatcherOptions(timeout=0.3)
        async with Dispatcher(tenant.ctx, options=options) as dispatcher:
            assert await dispatcher.run_once() == 1
    (delivery,) = await _deliveries(tenant.client, hook["id"])
    assert delivery["status"] == "pending" and len(receiver.received) == 1
    if hang:
        assert delivery["last_error"] == "no response within 0.3 s"
    else:
        assert delivery["last_status"] == 302


async def test_the_secret_is_never_logged(
    tenant: Tenant, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 200]
    async with receiver.running():
        await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)
        clock = Clock()
        async with Dispatcher(tenant.ctx, clock=clock) as dispatcher:
            await dispatcher.run_once()
            clock.advance(minutes=5)
            await dispatcher.run_once()
    assert len(receiver.received) == 2
    assert "mailgate.webhooks" in {r.name for r in caplog.records}
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


async def test_https_is_pinned_to_the_checked_address(
    tenant: Tenant, receiver: Receiver, tmp_path: Path
) -> None:
    """The name is resolved once and checked; TLS still verifies the configured name."""
    from mailgate.net.webhook import WebhookPoster

    ca = TestCA(tmp_path / "pki")
    server_context = ca.issue("hooks.mailgate.test").server_context()
    names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)

    class Resolver:
        def __init__(self) -> None:
            self.asked: list[str] = []

        async def resolve(self, host: str, port: int) -> list[str]:
            self.asked.append(host)
            return ["127.0.0.1"]

    resolver = Resolver()
    async with receiver.running(server_context):
        url = f"https://hooks.mailgate.test:{receiver.port}/in"
        async with tenant.ctx.db.transaction() as tx:
            acme = await get_tenant(tx, "acme")
            repo = webhook_store.WebhookRepo(tx, tenant.ctx.box, acme.id)
            hook_id = await repo.create(url=url, events=[WebhookEvent.SENT], secret=SECRET)
        await tenant.send_ok()
        await drain(tenant.ctx)
        trust = ssl.create_default_context(cadata=ca.ca_pem)
        poster = WebhookPoster(verify=trust, resolver=resolver)
        try:
            async with Dispatcher(tenant.ctx, poster=poster) as dispatcher:
                assert await dispatcher.run_once() == 1
        finally:
            await poster.aclose()
    (delivery,) = await _deliveries(tenant.client, hook_id)
    assert delivery["status"] == "delivered", delivery
    assert resolver.asked == ["hooks.mailgate.test"]
    assert names == ["hooks.mailgate.test"]
    assert receiver.received[0].headers["host"] == f"hooks.mailgate.test:{receiver.port}"
    assert receiver.received[0].signature_ok


# The signature scheme and the retry policy (pure) ----------------------------------------


def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    from mailgate.domain.webhooks import sign, verify_signature

    body = b'{"id":"1","type":"message.sent"}'
    stamp = 1_700_000_000
    signature = sign(SECRET, stamp, body)
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert signature == "sha256=" + expected.hexdigest()

    def check(**overrides: Any) -> bool:
        args: dict[str, Any] = {
            "timestamp": str(stamp),
            "body": body,
            "signature": signature,
            "now": stamp + 10,
        }
        args.update(overrides)
        return verify_signature(SECRET, **args)

    assert check()
    assert not check(body=body + b" ")
    assert not check(timestamp=str(stamp + 1))
    assert not check(now=stamp + 301)  # a replay older than five minutes
    assert not check(now=stamp - 301)
    assert not check(timestamp="-1")
    assert not verify_signature(
        "other-secret", timestamp=str(stamp), body=body, signature=signature, now=stamp
    )


def test_retries_back_off_with_jitter_and_stop_after_24_hours() -> None:
    import random

    from mailgate.domain.webhooks import DeliveryPolicy

    policy = DeliveryPolicy()
    created = utcnow()
    rng = random.Random(7)
    delays = []
    now, attempts = created, 0
    while True:
        attempts += 1
        when = policy.next_attempt(created_at=created, now=now, attempts=attempts, rng=rng)
        if when is None:
            break
        delays.append((when - now).total_seconds())
        now = when
    assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
    assert max(delays) <= 3600 * 1.2
    assert timedelta(hours=23) < now - created <= timedelta(hours=24)
    assert not policy.should_disable(None, now)
    assert not policy.should_disable(created, created + timedelta(hours=23, minutes=59))
    assert policy.should_disable(created, created + timedelta(hours=24))
