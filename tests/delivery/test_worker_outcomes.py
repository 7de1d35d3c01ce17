"""The worker against real SMTP peers on loopback: outcomes, retries, holds, fallback."""

from __future__ import annotations

import asyncio
import gc
import warnings
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from mailgate.engines.factory import EngineCache
from mailgate.storage.tables import attempts
from mailgate.worker.runner import Worker
from tests.conftest import ADMIN
from tests.delivery.conftest import FAST, T, Tenant, drain, make_due
from tests.support.smtp_servers import (
    CLOSE,
    AiosmtpdServer,
    RawConnection,
    RawSmtpServer,
    free_port,
)
from tests.support.tls import TestCA

MIXED_RCPT = [b"250 2.1.5 ok\r\n", b"450 4.2.1 mailbox busy\r\n", b"550 5.1.1 no such user\r\n"]


async def test_mixed_recipients_deliver_fail_and_retry_only_the_deferred(
    tenant: Tenant, engines: EngineCache
) -> None:
    async with RawSmtpServer.scripted({"RCPT": [*MIXED_RCPT, b"250 2.1.5 ok\r\n"]}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(
            stage="production", to=["one@example.com", "two@example.com", "three@example.com"]
        )
        await drain(tenant.ctx, engines=engines)
        first = await tenant.message(message_id)
        assert first["status"] == "deferred"
        assert [(r["email"], r["status"], r["code"]) for r in first["recipients"]] == [
            ("one@example.com", "sent", 250),
            ("two@example.com", "deferred", 450),
            ("three@example.com", "failed", 550),
        ]
        assert len(raw.contents) == 1
        await make_due(tenant.ctx)
        await drain(tenant.ctx, engines=engines)
    final = await tenant.message(message_id)
    assert final["status"] == "sent"
    assert [r["status"] for r in final["recipients"]] == ["sent", "sent", "failed"]
    rcpts = [c for c in raw.received.split(b"\r\n") if c.upper().startswith(b"RCPT TO")]
    assert rcpts.count(b"RCPT TO:<one@example.com>") == 1
    assert rcpts.count(b"RCPT TO:<two@example.com>") == 2
    assert rcpts.count(b"RCPT TO:<three@example.com>") == 1
    assert len(raw.contents) == 2  # the data went once per attempt, to accepted recipients
    assert [a["outcome"] for a in final["attempts"]] == ["deferred", "sent"]


async def test_server_stated_delay_is_honoured(tenant: Tenant, engines: EngineCache) -> None:
    reply = b"451 4.7.1 Greylisted, try again in 120 seconds\r\n"
    async with RawSmtpServer.scripted({"DOT": reply}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production")
        before = datetime.now(UTC)
        await drain(tenant.ctx, engines=engines)
    message = await tenant.message(message_id)
    assert message["status"] == "deferred"
    due = datetime.fromisoformat(message["next_attempt_at"])
    assert 110 <= (due - before).total_seconds() <= 130
    assert "Greylisted" in message["last_error"]


async def test_permanent_failure(tenant: Tenant, engines: EngineCache) -> None:
    async with RawSmtpServer.scripted({"DOT": b"554 5.7.1 rejected as spam\r\n"}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
    message = await tenant.message(message_id)
    assert message["status"] == "failed"
    assert message["recipients"][0]["code"] == 554
    assert message["finished_at"] is not None


async def test_lost_after_final_dot_is_unknown_and_flagged(
    tenant: Tenant, engines: EngineCache
) -> None:
    async def first_connection_drops(conn: RawConnection) -> None:
        await conn.serve({"DOT": CLOSE} if conn.index == 0 else None)

    async with RawSmtpServer(first_connection_drops) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
        first = await tenant.message(message_id)
        assert first["status"] == "deferred"
        assert first["attempts"][0]["outcome"] == "unknown"
        assert first["attempts"][0]["possible_duplicate"] is False
        await make_due(tenant.ctx)
        await drain(tenant.ctx, engines=engines)
    final = await tenant.message(message_id)
    assert final["status"] == "sent"
    assert [a["possible_duplicate"] for a in final["attempts"]] == [False, True]
    # Both attempts sent the very same bytes, with the same Message-ID.
    assert len(raw.contents) == 2 and raw.contents[0] == raw.contents[1]


async def test_auth_failure_holds_mail_until_the_server_is_edited(
    tenant: Tenant, engines: EngineCache, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    cert = ca.issue("mail.mailgate.test")
    async with AiosmtpdServer(mode="starttls", cert=cert, user="u@acme.example") as smtp:
        server = await tenant.server(
            smtp.port,
            host="mail.mailgate.test",
            security="starttls",
            auth="password",
            username="u@acme.example",
            password="wrong-password",
            ca_certificates=ca.ca_pem,
        )
        ids = [await tenant.send_ok(stage="production") for _ in range(3)]
        await drain(tenant.ctx, engines=engines)
        held = [await tenant.message(i) for i in ids]
        assert {m["status"] for m in held} == {"deferred"}
        assert all(m["held"] and m["next_attempt_at"] is None for m in held)
        status = await tenant.client.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)
        assert status.json()["status"] == "auth_failed"
        # Held mail burns no attempts: at most the first of the batch reached AUTH.
        async with tenant.ctx.db.read() as tx:
            n = len((await tx.execute(select(attempts.c.id))).all())
        assert 1 <= n <= 3
        await drain(tenant.ctx, engines=engines)  # nothing happens while held
        async with tenant.ctx.db.read() as tx:
            assert len((await tx.execute(select(attempts.c.id))).all()) == n
        r = await tenant.client.patch(
            f"{T}/mail-servers/{server['id']}", json={"password": smtp.password}, headers=ADMIN
        )
        assert r.status_code == 200 and r.json()["status"] == "unknown"
        await drain(tenant.ctx, engines=engines)
        assert len(smtp.messages) == 3
        await engines.aclose()  # hang up before the server stops
    # aiosmtpd leaves the server side of STARTTLS sessions to the garbage collector when it
    # stops; collect them here, quietly, so the warning is not blamed on the next test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert {(await tenant.message(i))["status"] for i in ids} == {"sent"}
    status = await tenant.client.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)
    assert status.json()["status"] == "ok"


async def test_fallback_takes_over_when_primary_is_unreachable(
    tenant: Tenant, engines: EngineCache
) -> None:
    async with RawSmtpServer.scripted() as good:
        fallback = await tenant.server(good.port, name="Fallback", stages=[], is_default=False)
        closed_port = free_port()
        await tenant.server(closed_port, name="Primary", fallback_server_id=fallback["id"])
        worker = Worker(tenant.ctx, engines=engines, options=FAST)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            first = await tenant.send_ok(stage="production")
            await _until_final(tenant, first)
            second = await tenant.send_ok(stage="production")
            await _until_final(tenant, second)
        finally:
            stop.set()
            await running
    message = await tenant.message(first)
    assert message["status"] == "sent"
    assert [a["server_id"] for a in message["attempts"]][-1] == fallback["id"]
    assert message["attempts"][0]["outcome"] == "deferred"
    # While the primary is failing, mail goes to the fallback straight away.
    later = await tenant.message(second)
    assert [a["server_id"] for a in later["attempts"]] == [fallback["id"]]
    assert len(good.contents) == 2


async def _until_final(tenant: Tenant, message_id: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await tenant.message(message_id))["status"] not in ("sent", "failed"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def test_give_up_after_the_configured_age(tenant: Tenant, engines: EngineCache) -> None:
    from dataclasses import replace

    tenant.ctx.policy = replace(tenant.ctx.policy, give_up_hours=0.0001)  # 0.36 s
    async with RawSmtpServer.scripted({"DOT": b"451 4.3.0 try later\r\n"}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production")
        await asyncio.sleep(0.5)
        await drain(tenant.ctx, engines=engines)
    message = await tenant.message(message_id)
    assert message["status"] == "failed"
    assert message["last_error"].startswith("expired")
    assert message["recipients"][0]["status"] == "failed"
