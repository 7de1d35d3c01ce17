"""`mailgate send`, `mailgate queue status` and `/metrics`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx

from mailgate.settings import Settings
from tests.delivery.conftest import Tenant


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env |= {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "COLUMNS": "120",
    }
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def test_send_then_queue_status_then_metrics(
    tenant: Tenant, settings: Settings, client: httpx.AsyncClient
) -> None:
    sent = _cli(
        settings,
        "send",
        "acme",
        "--to",
        "a@example.com",
        "--subject",
        "CLI",
        "--text",
        "from the command line",
    )
    assert sent.returncode == 0, sent.stderr
    body = json.loads(sent.stdout)
    assert body["status"] == "queued"
    message = await tenant.message(body["id"])
    assert message["subject"] == "CLI"
    status = _cli(settings, "queue", "status")
    assert status.returncode == 0, status.stderr
    assert re.search(r"│ queued\s+│\s+1 │", status.stdout), status.stdout
    metrics = (await client.get("/metrics")).text
    assert 'mailgate_messages{status="queued"} 1' in metrics
    assert 'mailgate_messages{status="sent"} 0' in metrics
    bad = _cli(settings, "send", "acme", "--to", "not an address", "--subject", "x", "--text", "y")
    assert bad.returncode == 1 and "to[0]" in bad.stderr
