"""`mailgate serve` starts worker processes beside itself: one per core beyond the first."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.cli import serve_worker_processes
from mailgate.settings import Settings
from tests.delivery.conftest import Tenant
from tests.delivery.test_durability import _counts, _enqueue
from tests.delivery.test_supervisor import _children, _until
from tests.support.smtp_servers import RawSmtpServer


def test_default_is_one_process_per_core_beyond_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert serve_worker_processes(None, workers=1) == 3
    assert serve_worker_processes(2, workers=1) == 2
    assert serve_worker_processes(None, workers=0) == 0  # API only: no workers anywhere
    # Worker processes asked for explicitly run also when serve has no workers of its own.
    assert serve_worker_processes(2, workers=0) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert serve_worker_processes(None, workers=1) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_serve_worker_processes_deliver_and_stop(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("process supervision does not depend on the database; run it once")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        "MAILGATE_SMTP_PORT": "0",
        "MAILGATE_WORKER_PROCESSES": "1",
    }
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port)
        with (tmp_path / "serve.log").open("wb") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "serve", "--host", "127.0.0.1",
                 "--port", str(_free_port())],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await _until(lambda: len(_children(serve.pid)) == 1, 30, "one worker process")
            (child,) = _children(serve.pid)
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            assert command[1:5] == [b"-m", b"mailgate", b"worker", b"--count"]
            await _enqueue(tenant, 300)
            deadline = time.monotonic() + 60
            while (await _counts(tenant.ctx))["sent"] < 300:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.2)
        finally:
            serve.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(serve.wait, 60)
    assert status == 0, (tmp_path / "serve.log").read_text()
    assert "1 worker process(es) beside the API" in (tmp_path / "serve.log").read_text()
    assert (
        not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    )
