"""The delivery worker survives a locked database and unloadable rows, and is watched.

A claim pass that fails (the database is locked by another program for longer than the busy
timeout) is logged at once and retried with backoff while ``/readyz`` answers 503; a queued
row that cannot be loaded (no body row) is failed with the reason instead of killing the
worker; a worker that dies anyway is replaced by its pool, in ``serve`` and in
``mailgate worker`` processes alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from mailgate.engines.factory import EngineCache
from mailgate.settings import Settings
from mailgate.storage.db import Database
from mailgate.storage.tables import message_bodies
from mailgate.worker.pool import WorkerPool
from mailgate.worker.runner import Worker
from tests.delivery.conftest import FAST, Tenant, drain
from tests.support.smtp_servers import AiosmtpdServer, LoopbackDialer, free_port

RESILIENT = replace(FAST, error_backoff=0.1, error_backoff_cap=0.5)


async def _until(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


class _ExclusiveHolder:
    """A second, ordinary SQLite connection holding ``BEGIN EXCLUSIVE`` until released."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.held = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.held.set()
            self.release.wait(60)
            conn.execute("COMMIT")
        finally:
            conn.close()


async def test_worker_survives_a_lock_held_past_the_busy_timeout(
    tenant: Tenant, settings: Settings, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("BEGIN EXCLUSIVE by another program is a SQLite scenario")
    path = settings.effective_database_url.split(":///", 1)[1]
    # The production busy timeout is 30 s; the scenario is the same with a shorter one.
    db = Database(settings.effective_database_url, busy_timeout_ms=300)
    ctx = replace(tenant.ctx, db=db)
    holder = _ExclusiveHolder(path)
    caplog.set_level(logging.ERROR, logger="mailgate.worker")
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        cache = EngineCache(dialer=LoopbackDialer())
        worker = Worker(ctx, engines=cache, options=RESILIENT)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        thread = threading.Thread(target=holder.run)
        try:
            await asyncio.sleep(0.3)
            assert (await client.get("/readyz")).status_code == 200
            thread.start()
            await asyncio.to_thread(holder.held.wait, 5)
            # Logged at once (not when the worker is stopped), and visible to probes.
            await _until(
                lambda: "database is locked" in caplog.text, 5, "the lock error was logged"
            )
            began = time.monotonic()
            ready = await client.get("/readyz")
            assert time.monotonic() - began < 2, "the probe must not wait behind the lock"
            assert ready.status_code == 503
            assert "claiming failed" in ready.json()["workers"]["problems"][0]
            metrics = (await client.get("/metrics")).text
            assert _metric(metrics, "mailgate_worker_not_claiming") == 1
            assert _metric(metrics, "mailgate_worker_claim_failures_total") >= 1
            await asyncio.sleep(1.0)  # several failed passes: the worker keeps trying
            assert not task.done()
        finally:
            holder.release.set()
            if thread.is_alive():
                await asyncio.to_thread(thread.join, 10)
        try:
            message_id = await tenant.send_ok(stage="production")
            await _until(lambda: len(smtp.messages) == 1, 15, "mail moves again")
            await _until(
                lambda: _ready(client), 5, "/readyz answers 200 again after the lock is gone"
            )
            assert (await tenant.message(message_id))["status"] in ("sending", "sent")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await cache.aclose()
            await db.dispose()
    metrics = (await client.get("/metrics")).text
    assert _metric(metrics, "mailgate_worker_claim_failures_total") >= 2


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_a_row_without_its_body_is_quarantined_and_the_rest_delivered(
    tenant: Tenant, client: httpx.AsyncClient, engines: EngineCache
) -> None:
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        ids = [await tenant.send_ok(stage="production", subject=f"n{i}") for i in range(3)]
        async with tenant.ctx.db.transaction() as tx:
            await tx.execute(delete(message_bodies).where(message_bodies.c.message_id == ids[1]))
        await drain(tenant.ctx, engines=engines, timeout=10)
        assert sorted(_subject(m.data) for m in smtp.messages) == ["n0", "n2"]
    broken = await tenant.message(ids[1])
    reason = "quarantined: the message cannot be loaded: its stored body is missing"
    assert broken["status"] == "failed"
    assert broken["last_error"] == reason
    assert [(r["status"], r["reply"]) for r in broken["recipients"]] == [("failed", reason)]
    assert [(a["engine"], a["outcome"], a["reply"]) for a in broken["attempts"]] == [
        ("queue", "failed", reason)
    ]
    for good in (ids[0], ids[2]):
        assert (await tenant.message(good))["status"] == "sent"
    metrics = (await client.get("/metrics")).text
    assert _metric(metrics, "mailgate_messages_quarantined_total") == 1


def _subject(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


class _DiesOnce:
    """Makes the first worker's claim loop die with a bug outside its guarded pass."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.died = False
        idle = Worker._idle

        async def dying_idle(worker: Worker, stop: asyncio.Event, *, full: bool) -> None:
            if not self.died:
                self.died = True
                raise RuntimeError("a bug in the claim loop")
            await idle(worker, stop, full=full)

        monkeypatch.setattr(Worker, "_idle", dying_idle)


async def test_the_pool_replaces_a_dead_worker(
    tenant: Tenant,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool that ``mailgate serve`` runs in-process restarts a worker task that died."""
    fault = _DiesOnce(monkeypatch)
    caplog.set_level(logging.ERROR, logger="mailgate.worker")
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        pool = WorkerPool(
            tenant.ctx, count=1, options=RESILIENT, engines=EngineCache(dialer=LoopbackDialer())
        )
        stop = asyncio.Event()
        task = asyncio.create_task(pool.run(stop))
        try:
            await _until(lambda: fault.died, 5, "the worker died")
            await tenant.send_ok(stage="production")
            await _until(lambda: len(smtp.messages) == 1, 15, "the replacement delivers")
            await _until(lambda: _ready(client), 5, "ready once the replacement claims")
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert "delivery worker worker-0 died; restarting it" in caplog.text
    assert "a bug in the claim loop" in caplog.text
    metrics = (await client.get("/metrics")).text
    assert _metric(metrics, "mailgate_worker_restarts_total") == 1


_DYING_WORKER = """
import asyncio
from mailgate.worker.runner import Worker
idle = Worker._idle
state = {"died": False}
async def dying_idle(self, stop, *, full):
    if not state["died"]:
        state["died"] = True
        raise RuntimeError("a bug in the claim loop")
    await idle(self, stop, full=full)
Worker._idle = dying_idle
from mailgate.cli import main
main()
"""


async def test_a_worker_process_replaces_its_dead_worker(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    """``mailgate worker``: the same pool keeps the process delivering after a task died."""
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("restarting a task does not depend on the database; run it once")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    log_path = tmp_path / "worker.log"
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _DYING_WORKER, "worker"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await _until(
                lambda: "restarting it" in log_path.read_text(), 30, "the task died and restarts"
            )
            await tenant.send_ok(stage="production")
            await _until(lambda: len(smtp.messages) == 1, 30, "the replacement delivers")
            assert process.poll() is None
        finally:
            process.terminate()
            assert await asyncio.to_thread(process.wait, 60) == 0
    assert "a bug in the claim loop" in log_path.read_text()


async def test_serve_replaces_its_dead_worker_and_reports_it(tmp_path: Path) -> None:
    """``mailgate serve``: the in-process worker that died is replaced, and the probes show
    it (restart counted; ready again once the replacement claims)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {"MAILGATE_DATA_DIR": str(tmp_path / "var"), "MAILGATE_SMTP_PORT": "0"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _DYING_WORKER, "serve", "--port", str(port), "--workers", "1"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:

            async def restarted_and_ready() -> bool:
                assert process.poll() is None, log_path.read_text()
                try:
                    ready = await http.get("/readyz")
                    metrics = (await http.get("/metrics")).text
                except httpx.HTTPError:
                    return False
                restarts = _metric(metrics, "mailgate_worker_restarts_total")
                return ready.status_code == 200 and restarts == 1

            await _until(restarted_and_ready, 60, "serve restarts its worker and is ready")
            body = (await http.get("/readyz")).json()
            assert body["workers"] == {"loops": 1, "claiming": 1, "problems": []}
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 60) == 0
    text = log_path.read_text()
    assert "delivery worker worker-0 died; restarting it" in text
    assert "a bug in the claim loop" in text


async def test_a_claim_loop_stuck_behind_a_lock_is_reported_before_it_fails(
    tenant: Tenant, settings: Settings, client: httpx.AsyncClient
) -> None:
    """While the claim waits out the busy timeout, /readyz already says the loop is stuck."""
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("BEGIN EXCLUSIVE by another program is a SQLite scenario")
    tenant.ctx.workers.stall_after = 0.5
    db = Database(settings.effective_database_url, busy_timeout_ms=20_000)
    ctx = replace(tenant.ctx, db=db)
    holder = _ExclusiveHolder(settings.effective_database_url.split(":///", 1)[1])
    worker = Worker(ctx, engines=EngineCache(dialer=LoopbackDialer()), options=RESILIENT)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    thread = threading.Thread(target=holder.run)
    try:
        await _until(lambda: _ready(client), 5, "ready before the lock")
        thread.start()
        await asyncio.to_thread(holder.held.wait, 5)
        await _until(lambda: not tenant.ctx.workers.report(now=time.monotonic()).ready, 5, "stuck")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["workers"]["problems"][0].startswith("worker-0: no claim pass for")
        metrics = (await client.get("/metrics")).text
        assert _metric(metrics, "mailgate_worker_not_claiming") == 1
        assert _metric(metrics, "mailgate_worker_claim_failures_total") == 0
    finally:
        holder.release.set()
        if thread.is_alive():
            await asyncio.to_thread(thread.join, 10)
    try:
        await _until(lambda: _ready(client), 10, "ready again once the lock is gone")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await worker.engines.aclose()
        await db.dispose()


async def test_a_pass_that_fails_after_claiming_gives_its_mail_back_at_once(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Mail claimed by a pass that then failed is not left to its lease (120 s) and is not
    flagged as a possible duplicate: it was never attempted."""
    from mailgate.worker.servers import ServerDirectory

    load = ServerDirectory.load
    failed: list[bool] = []

    async def failing_once(self: ServerDirectory, ids: set[str]) -> object:
        if not failed:
            failed.append(True)
            raise ConnectionError("the database went away")
        return await load(self, ids)

    monkeypatch.setattr(ServerDirectory, "load", failing_once)
    caplog.set_level(logging.ERROR, logger="mailgate.worker")
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        message_id = await tenant.send_ok(stage="production")
        cache = EngineCache(dialer=LoopbackDialer())
        try:
            await drain(tenant.ctx, engines=cache, timeout=10, options=RESILIENT)
        finally:
            await cache.aclose()
        assert len(smtp.messages) == 1
    assert failed
    assert "claiming mail failed (ConnectionError: the database went away)" in caplog.text
    message = await tenant.message(message_id)
    assert message["status"] == "sent"
    assert [a["possible_duplicate"] for a in message["attempts"]] == [False]


async def test_an_outcome_that_cannot_be_committed_comes_back_when_its_lease_runs_out(
    tenant: Tenant, engines: EngineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker stops renewing the lease of a message whose outcome it could not write:
    the message is reclaimed, flagged, and sent again while the worker keeps running
    (renewing it would leave it in `sending` until the worker stopped)."""
    from datetime import timedelta

    from sqlalchemy import select

    from mailgate.storage.queue import queue_for
    from mailgate.storage.tables import attempts, messages

    queue_class = type(queue_for(tenant.ctx.db.dialect))
    failures = []
    for name in ("finish_alone", "finish"):  # the first outcome write fails, either way
        original = getattr(queue_class, name)

        async def failing_once(
            self: object, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            if not failures:
                failures.append(1)
                raise RuntimeError("disk I/O error")
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(queue_class, name, failing_once)
    options = replace(FAST, lease=timedelta(seconds=1))
    async with AiosmtpdServer() as smtp:
        await tenant.server(smtp.port)
        message_id = await tenant.send_ok(stage="production")
        worker = Worker(tenant.ctx, engines=engines, options=options)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            deadline = time.monotonic() + 15
            while (await tenant.message(message_id))["status"] != "sent":
                assert time.monotonic() < deadline, await tenant.message(message_id)
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        assert len(smtp.messages) == 2  # sent, its outcome lost, sent again
    assert failures == [1]
    async with tenant.ctx.db.read() as tx:
        flags = (await tx.execute(select(attempts.c.possible_duplicate))).scalars().all()
        status = (await tx.execute(select(messages.c.status))).scalars().all()
    assert flags == [True] and status == ["sent"]
