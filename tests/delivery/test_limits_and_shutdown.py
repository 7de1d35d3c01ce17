"""Per-server rate limits across workers, graceful shutdown, retention."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from mailgate.engines.factory import EngineCache
from mailgate.settings import Settings
from mailgate.storage.base import utcnow
from mailgate.storage.tables import messages
from mailgate.worker import maintenance
from mailgate.worker.runner import Worker
from tests.delivery.conftest import FAST, Tenant, drain
from tests.support.smtp_servers import STALL, RawConnection, RawSmtpServer


async def _statuses(tenant: Tenant) -> dict[str, int]:
    async with tenant.ctx.db.read() as tx:
        rows = await tx.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        return {s: int(n) for s, n in rows}


async def test_rate_limit_is_shared_by_every_worker(tenant: Tenant, engines: EngineCache) -> None:
    # Budgets are per clock minute: start well inside one so the run cannot span two.
    second = time.time() % 60
    if second > 50:
        await asyncio.sleep(61 - second)
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port, rate_limit_per_minute=5)
        for _ in range(12):
            await tenant.send_ok(stage="production")
        stop = asyncio.Event()
        workers = [Worker(tenant.ctx, engines=engines, options=FAST) for _ in range(3)]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*tasks)
    statuses = await _statuses(tenant)
    assert statuses.get("sent") == 5  # this minute's budget, however many workers ask
    assert statuses.get("deferred") == 7
    assert len(raw.contents) == 5
    async with tenant.ctx.db.read() as tx:
        due = (
            await tx.execute(
                select(messages.c.next_attempt_at, messages.c.attempts).where(
                    messages.c.status == "deferred"
                )
            )
        ).all()
    now = utcnow()
    for when, attempts in due:
        assert attempts == 0  # waiting for budget is not an attempt
        wait = (when.replace(tzinfo=now.tzinfo) - now).total_seconds()
        assert 0 < wait <= 61


async def test_sigterm_mid_delivery_leaves_nothing_sending(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    async def slow(conn: RawConnection) -> None:
        await conn.serve({"DOT": STALL})  # the reply to the final dot never comes

    async with RawSmtpServer(slow) as raw:
        await tenant.server(raw.port, timeout_seconds=60)
        ids = [await tenant.send_ok(stage="production") for _ in range(3)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        env |= {
            "MAILGATE_DATABASE_URL": settings.effective_database_url,
            "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
            "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        with (tmp_path / "worker.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while len(raw.contents) < 1:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            await asyncio.sleep(0.1)
        assert (await _statuses(tenant)).get("sending", 0) >= 1
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    assert code == 0, (tmp_path / "worker.log").read_text()
    statuses = await _statuses(tenant)
    assert statuses.get("sending", 0) == 0
    assert statuses.get("deferred") == len(ids)
    async with tenant.ctx.db.read() as tx:
        flags = (
            await tx.execute(select(messages.c.possible_duplicate, messages.c.lease_owner))
        ).all()
    # The data was on the wire when the worker stopped: the next attempt is flagged.
    assert any(dup for dup, _ in flags)
    assert all(owner is None for _, owner in flags)


async def test_retention_purges_old_delivered_mail(tenant: Tenant) -> None:
    old = await tenant.send_ok()
    new = await tenant.send_ok()
    pending = await tenant.send_ok(send_at="2099-01-01T00:00:00Z")
    await drain(tenant.ctx)
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(messages)
            .where(messages.c.id == old)
            .values(finished_at=utcnow() - timedelta(days=31))
        )
    purged = await maintenance.purge_once(tenant.ctx)
    assert purged.messages == 1
    async with tenant.ctx.db.read() as tx:
        left = {r[0] for r in await tx.execute(select(messages.c.id))}
    assert left == {new, pending}
