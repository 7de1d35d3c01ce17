"""`mailgate serve` runs MAILGATE_API_PROCESSES HTTP API processes (itself included) on one
port; a busy port stops it with a configuration error."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mailgate.settings import Settings
from tests.delivery.conftest import T, Tenant
from tests.delivery.test_durability import _counts
from tests.delivery.test_serve_processes import _free_port
from tests.delivery.test_supervisor import _children, _until


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return env | {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_DATA_DIR": str(settings.data_dir),
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_SMTP_PORT": "0",
        "MAILGATE_WORKERS": "0",
        **extra,
    }


def _api_children(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:  # ended since it was listed
            continue
        if b"api-process" in command:
            found.append(child)
    return found


@pytest.mark.slow
async def test_api_processes_share_the_port_and_are_restarted(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("process supervision does not depend on the database; run it once")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            env=_env(settings, MAILGATE_API_PROCESSES="2"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        await _until(lambda: len(_api_children(serve.pid)) == 1, 30, "one more API process")
        (first,) = _api_children(serve.pid)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            deadline = asyncio.get_running_loop().time() + 30
            while not await healthy():
                assert asyncio.get_running_loop().time() < deadline, log_path.read_text()
                await asyncio.sleep(0.2)
            # With serve itself stopped, the other process accepts and answers, and what it
            # accepts is committed like any message.
            os.kill(serve.pid, signal.SIGSTOP)
            try:
                async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:
                    body = {"to": ["rcpt@example.com"], "subject": "Hi", "text": "Hello."}
                    r = await fresh.post(f"{T}/messages", json=body, headers=tenant.sender)
                    assert r.status_code == 202, r.text
            finally:
                os.kill(serve.pid, signal.SIGCONT)
            assert (await _counts(tenant.ctx))["queued"] == 1
            # An API process that dies is replaced.
            os.kill(first, signal.SIGKILL)
            await _until(
                lambda: [p for p in _api_children(serve.pid) if p != first],
                30,
                "a replacement API process",
            )
            assert await healthy()
    finally:
        serve.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(serve.wait, 60)
    text = log_path.read_text()
    assert status == 0, text
    assert f"API on http://127.0.0.1:{port} in 2 processes" in text
    assert "API process exited with status -9; starting another" in text
    assert not _api_children(serve.pid)


def test_a_busy_port_is_a_configuration_error(settings: Settings) -> None:
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("opening the port does not depend on the database; run it once")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mailgate", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            env=_env(settings, MAILGATE_API_PROCESSES="2"),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "MAILGATE_PORT" in done.stderr
