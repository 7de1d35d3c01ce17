"""`mailgate worker --processes N`: children deliver, a dead child is replaced, SIGTERM stops."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.settings import Settings
from tests.delivery.conftest import Tenant
from tests.delivery.test_durability import _counts, _enqueue
from tests.support.smtp_servers import RawSmtpServer


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


async def _until(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_supervised_processes(tenant: Tenant, settings: Settings, tmp_path: Path) -> None:
    if tenant.ctx.db.dialect != "sqlite":
        pytest.skip("process supervision does not depend on the database; run it once")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        "MAILGATE_LEASE_SECONDS": "2",
    }
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port)
        await _enqueue(tenant, 500)
        with (tmp_path / "supervisor.log").open("wb") as log:
            parent = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "worker", "--processes", "2"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        await _until(lambda: len(_children(parent.pid)) == 2, 30, "two children")
        first = _children(parent.pid)
        os.kill(first[0], signal.SIGKILL)
        await _until(
            lambda: len(_children(parent.pid)) == 2 and first[0] not in _children(parent.pid),
            30,
            "a replacement child",
        )
        deadline = time.monotonic() + 60
        while (await _counts(tenant.ctx))["sent"] < 500:
            assert time.monotonic() < deadline, (tmp_path / "supervisor.log").read_text()
            await asyncio.sleep(0.2)
        children = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(parent.wait, 90) == 0
    for child in children:
        assert (
            not Path(f"/proc/{child}").exists()
            or "zombie" in Path(f"/proc/{child}/status").read_text()
        )
    log_text = (tmp_path / "supervisor.log").read_text()
    assert "starting another" in log_text


def test_configuration_error_stops_the_supervisor(tmp_path: Path) -> None:
    """A child that cannot start (schema not upgraded) ends the supervisor, not a restart loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATA_DIR": str(tmp_path),
        "MAILGATE_SECRET_KEYS": base64.urlsafe_b64encode(bytes(32)).decode(),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mailgate", "worker", "--processes", "2"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "mailgate db upgrade" in " ".join(done.stderr.split())  # Rich may wrap the line
    assert "starting another" not in done.stderr
    assert time.monotonic() - started < 30
