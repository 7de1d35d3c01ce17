"""Durability: workers killed with SIGKILL lose nothing; two workers deliver exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from mailgate.runtime import Context
from mailgate.settings import Settings
from mailgate.storage.tables import attempts, messages
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant
from tests.support.smtp_servers import RawSmtpServer

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


async def _enqueue(tenant: Tenant, count: int) -> None:
    for start in range(0, count, 500):
        batch = [
            {
                "to": [f"user{i}@example.com"],
                "subject": f"n{i}",
                "text": "x" * 1500,
                "stage": "production",
            }
            for i in range(start, min(start + 500, count))
        ]
        r = await tenant.client.post(
            f"{T}/messages/batch", json={"messages": batch}, headers=tenant.sender
        )
        assert r.status_code == 200
        assert all(item["status"] == 202 for item in r.json()["items"])


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": ",".join(k.get_secret_value() for k in settings.secret_keys),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        "MAILGATE_LEASE_SECONDS": "2",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mailgate", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _counts(ctx: Context) -> Counter[str]:
    async with ctx.db.read() as tx:
        rows = await tx.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        return Counter({status: int(n) for status, n in rows})


async def _flagged_message_ids(ctx: Context) -> set[bytes]:
    async with ctx.db.read() as tx:
        rows = await tx.execute(
            select(messages.c.message_id)
            .join(attempts, attempts.c.message_id == messages.c.id)
            .where(attempts.c.possible_duplicate.is_(True))
        )
        return {r[0].encode() for r in rows}


def _delivered(raw: RawSmtpServer) -> Counter[bytes]:
    seen: Counter[bytes] = Counter()
    for content in raw.contents:
        match = MESSAGE_ID.search(content)
        assert match is not None
        seen[match.group(1)] += 1
    return seen


@pytest.mark.slow
async def test_sigkill_loses_nothing(tenant: Tenant, settings: Settings, tmp_path: Path) -> None:
    """Nothing is lost, every repeat is flagged, and a kill repeats at most one message per
    open connection: outcomes are recorded before a connection sends its next content."""
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("the SIGKILL test runs on SQLite; PostgreSQL has the two-worker test")
    total = 2000
    connections = 4
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port, max_connections=connections)
        await _enqueue(tenant, total)
        log = tmp_path / "worker.log"
        deadline = time.monotonic() + 150
        # Kill at points of progress rather than after fixed times, so that the kills land
        # mid-drain however fast the worker is on this machine.
        kill_at = [int(total * f) for f in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8)]
        kills = 0
        proc = _worker(settings, log)
        try:
            while True:
                await asyncio.sleep(0.02)
                counts = await _counts(tenant.ctx)
                if counts["sent"] == total:
                    break
                assert time.monotonic() < deadline, f"not drained: {counts} {log.read_text()}"
                if kills < len(kill_at) and counts["sent"] >= kill_at[kills]:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    kills += 1
                    proc = _worker(settings, log)
        finally:
            # Wait without blocking the loop: the sink lives here and must answer QUIT.
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        delivered = _delivered(sink)
    assert kills >= 3, "the worker was not killed often enough to mean anything"
    counts = await _counts(tenant.ctx)
    assert counts == Counter({"sent": total})  # nothing lost, nothing left in sending
    async with tenant.ctx.db.read() as tx:
        ids = {r[0].encode() for r in await tx.execute(select(messages.c.message_id))}
    assert set(delivered) == ids  # every message delivered at least once
    duplicates = {mid for mid, n in delivered.items() if n > 1}
    assert duplicates <= await _flagged_message_ids(tenant.ctx)
    # One worker process with one pool: each kill can repeat at most the messages whose
    # content was on its connections (sent, outcome not yet recorded).
    repeats = sum(n - 1 for n in delivered.values())
    assert repeats <= kills * connections, f"{repeats} repeated deliveries after {kills} kills"


@pytest.mark.slow
async def test_two_workers_on_postgres_deliver_exactly_once(
    tenant: Tenant, settings: Settings, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    if tenant.ctx.db.dialect != "postgresql":
        pytest.skip("several workers sharing one queue is the PostgreSQL deployment")
    total = 2000
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port, max_connections=4)
        await _enqueue(tenant, total)
        procs = [_worker(settings, tmp_path / f"w{i}.log") for i in range(2)]
        deadline = time.monotonic() + 120
        try:
            while (await _counts(tenant.ctx))["sent"] < total:
                assert time.monotonic() < deadline, await _counts(tenant.ctx)
                await asyncio.sleep(0.5)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                assert await asyncio.to_thread(proc.wait, 30) == 0
        delivered = _delivered(sink)
    assert len(delivered) == total
    assert max(delivered.values()) == 1
    assert await _flagged_message_ids(tenant.ctx) == set()
    async with tenant.ctx.db.read() as tx:
        workers = {r[0] for r in await tx.execute(select(attempts.c.worker).distinct())}
    assert len(workers) == 2  # both workers took part
    stats = (await client.get(f"{T}/messages/stats", headers=ADMIN)).json()
    assert stats["sent"] == total and stats["sending"] == 0
