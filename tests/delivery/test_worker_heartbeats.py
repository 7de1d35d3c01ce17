"""Delivery worker processes write heartbeats; /readyz and /metrics of any process see them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from mailgate.settings import Settings
from mailgate.storage import heartbeats
from mailgate.storage.base import utcnow
from mailgate.storage.tables import messages, worker_heartbeats
from mailgate.worker import heartbeat
from tests.delivery.conftest import Tenant
from tests.delivery.test_ops_metrics import _samples, _value


async def _until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.2)


async def _ready(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    r = await client.get("/readyz")
    return r.status_code, dict(r.json())


async def _alive_metric(client: httpx.AsyncClient) -> float | None:
    return _value(_samples((await client.get("/metrics")).text), "mailgate_worker_processes_alive")


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return env | {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_DATA_DIR": str(settings.data_dir),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
    }


async def test_a_standalone_worker_process_is_seen_by_readyz_and_metrics(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    # An API-only process (no workers of its own) in a deployment that expects one worker.
    tenant.ctx.policy = replace(tenant.ctx.policy, expect_workers=1)
    client = tenant.client
    status, body = await _ready(client)
    assert status == 503, body
    assert body["worker_processes"]["alive"] == 0
    assert body["worker_processes"]["problem"].startswith(
        "0 delivery worker process(es) alive, 1 expected (MAILGATE_EXPECT_WORKERS)"
    )
    assert await _alive_metric(client) == 0
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "worker"],
            env=_worker_env(settings), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        async def ready() -> bool:
            assert process.poll() is None, log_path.read_text()
            return (await _ready(client))[0] == 200

        await _until(ready, 60, "/readyz sees the worker process")
        status, body = await _ready(client)
        assert body["worker_processes"] == {
            "alive": 1,
            "claiming_loops": body["worker_processes"]["claiming_loops"],
            "expected": 1,
            "problem": None,
        }
        assert await _alive_metric(client) == 1
        async with tenant.ctx.db.read() as tx:
            (row,) = (await tx.execute(select(worker_heartbeats))).all()
        assert row.pid == process.pid and row.loops == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 0, log_path.read_text()
    # A worker that stops gracefully removes its heartbeat: at once not ready again.
    status, body = await _ready(client)
    assert status == 503 and body["worker_processes"]["alive"] == 0, body
    assert await _alive_metric(client) == 0


async def test_without_expect_workers_due_mail_and_no_live_worker_is_not_ready(
    tenant: Tenant,
) -> None:
    client = tenant.client
    assert (await _ready(client))[0] == 200  # idle, no workers: nothing is waiting
    message = await tenant.send_ok()
    assert (await _ready(client))[0] == 200  # just accepted: workers may be starting
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(messages)
            .where(messages.c.id == message)
            .values(next_attempt_at=utcnow() - timedelta(seconds=90))
        )
    status, body = await _ready(client)
    assert status == 503, body
    problem = body["worker_processes"]["problem"]
    assert problem.startswith("mail has been due for") and "start `mailgate worker`" in problem
    # A process with workers beating (here only its heartbeat runs): ready again.
    stop = asyncio.Event()
    task = asyncio.create_task(heartbeat.run(tenant.ctx, stop, interval=0.2))
    try:

        async def ready() -> bool:
            return (await _ready(client))[0] == 200

        await _until(ready, 30, "the heartbeat is seen")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert (await _ready(client))[0] == 503
    # MAILGATE_EXPECT_WORKERS=0 turns the check off.
    tenant.ctx.policy = replace(tenant.ctx.policy, expect_workers=0)
    assert (await _ready(client))[0] == 200


async def test_a_stale_heartbeat_does_not_count_and_old_ones_are_purged(tenant: Tenant) -> None:
    tenant.ctx.policy = replace(tenant.ctx.policy, expect_workers=1)
    now = utcnow()
    beat = heartbeats.Heartbeat(
        name="gone:1:abcd", host="gone", pid=1, loops=1, claiming=1,
        started_at=now - timedelta(hours=2), seen_at=now - timedelta(seconds=45),
    )  # fmt: skip
    async with tenant.ctx.db.transaction() as tx:
        await heartbeats.beat(tx, beat)
    status, body = await _ready(tenant.client)
    assert status == 503 and body["worker_processes"]["alive"] == 0
    async with tenant.ctx.db.transaction() as tx:
        await heartbeats.beat(tx, replace(beat, seen_at=utcnow()))
    assert (await _ready(tenant.client))[0] == 200
    async with tenant.ctx.db.transaction() as tx:
        assert await heartbeats.purge(tx, older_than=utcnow() - timedelta(hours=1)) == 0
        await heartbeats.beat(tx, replace(beat, seen_at=utcnow() - timedelta(hours=2)))
        assert await heartbeats.purge(tx, older_than=utcnow() - timedelta(hours=1)) == 1
