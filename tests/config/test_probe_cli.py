"""``mailgate server test TENANT SERVER [--json]`` against aiosmtpd, on SQLite and PostgreSQL.

The Typer app of the command is invoked directly (``cli_server.server_app``), in a thread
so that the test's event loop keeps serving while the command runs its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from mailgate.cli_server import server_app
from mailgate.services.context import Context
from mailgate.settings import Settings
from tests.config.helpers import new_tenant
from tests.config.test_probe_api import api_client, probe_app, smtp_body
from tests.conftest import ADMIN
from tests.engines.probe_support import SmtpServer
from tests.support.tls import TestCA

BASE = "/api/v1/tenants/acme/mail-servers"


pytestmark = pytest.mark.usefixtures("keep_root_logging")


@pytest.fixture
async def api(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(probe_app(ctx)) as client:
        await new_tenant(client)
        yield client


def _env(settings: Settings, tmp_path: Path, *, allow_loopback: bool = True) -> dict[str, str]:
    return {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_ALLOWED_NETWORKS": "127.0.0.0/8" if allow_loopback else "",
        "MAILGATE_DATA_DIR": str(tmp_path / "cli-data"),
        "MAILGATE_LOG_LEVEL": "WARNING",
    }


async def _invoke(args: list[str], env: dict[str, str]) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, server_app, args, env=env)


async def _server(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await api.post(BASE, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_table_by_id(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, settings: Settings, tmp_path: Path
) -> None:
    server_id = await _server(api, smtp_body(smtp.port, ca.ca_pem))
    result = await _invoke(["test", "acme", server_id], _env(settings, tmp_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("STARTTLS", "authenticated", "✓", "ehlo_after_tls", "TLSv1.", "PLAIN"):
        assert expected in out, (expected, out)
    assert "✗" not in out
    assert "certificate verified" in out and "no message was sent" in out
    assert smtp.transaction_commands() == []


async def test_json_by_name(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, settings: Settings, tmp_path: Path
) -> None:
    await _server(api, smtp_body(smtp.port, ca.ca_pem, name="Loopback relay"))
    result = await _invoke(["test", "acme", "Loopback relay", "--json"], _env(settings, tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["security"] == "STARTTLS"
    assert report["authenticated"] is True and report["error"] is None
    # The command line is audited like the API.
    audit = (await api.get("/api/v1/tenants/acme/audit", headers=ADMIN)).json()["items"]
    assert audit[0]["action"] == "mail_server.test" and audit[0]["actor"] == "cli"


async def test_failed_probe_exits_1_with_code_and_hint(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, settings: Settings, tmp_path: Path
) -> None:
    await _server(api, smtp_body(smtp.port, ca.ca_pem, password="wrong-password"))
    env = _env(settings, tmp_path)
    result = await _invoke(["test", "acme", "Loopback"], env)
    assert result.exit_code == 1, result.output
    assert "✗" in result.stdout and "auth_failed" in result.stdout and "hint:" in result.stdout
    assert "wrong-password" not in result.output
    result = await _invoke(["test", "acme", "Loopback", "--json"], env)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "auth_failed"


async def test_instance_policy_applies(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, settings: Settings, tmp_path: Path
) -> None:
    await _server(api, smtp_body(smtp.port, ca.ca_pem))
    env = _env(settings, tmp_path, allow_loopback=False)
    result = await _invoke(["test", "acme", "Loopback", "--json"], env)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["code"] == "destination_refused"
    assert smtp.commands == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["test", "acme", "no-such-server"], "no-such-server"),
        (["test", "no-such-tenant", "Loopback"], "no-such-tenant"),
    ],
)
async def test_unknown_tenant_or_server_exits_2(
    api: httpx.AsyncClient,
    settings: Settings,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    await _server(api, smtp_body(2525, ""))
    result = await _invoke(args, _env(settings, tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


async def test_broken_settings_exit_2(settings: Settings, tmp_path: Path) -> None:
    env = {**_env(settings, tmp_path), "MAILGATE_SECRET_KEYS": "not-a-key"}
    result = await _invoke(["test", "acme", "Loopback"], env)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
