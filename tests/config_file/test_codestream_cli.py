"""`mailgate config import-codestream` end to end, on SQLite and PostgreSQL.

The Typer app runs in a thread (its own event loop) against the test's database; the API
client of the same database checks what it wrote, and mail sent through the imported
servers reaches aiosmtpd and a SendGrid-like HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from mailgate.cli_config import config_app
from mailgate.services.config_export import read_state
from mailgate.services.context import Context
from mailgate.settings import Settings
from tests.config.helpers import bearer
from tests.config_file.helpers import CLI
from tests.conftest import ADMIN
from tests.delivery.conftest import drain
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import HOST, AiosmtpdServer
from tests.support.tls import TestCA

SAMPLES = Path(__file__).parent / "codestream"
T = "/api/v1/tenants/acme"
GMAIL_SECRET = "gmail-app-Pa55word-canary"
SENDGRID_KEY = "SG.import-send-canary.Kk31"


pytestmark = pytest.mark.usefixtures("keep_root_logging")


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "MAILGATE_DATABASE_URL": settings.effective_database_url,
        "MAILGATE_SECRET_KEYS": settings.secret_keys[0].get_secret_value(),
        "MAILGATE_DATA_DIR": str(tmp_path / "cli-data"),
        "MAILGATE_LOG_LEVEL": "WARNING",
        "COLUMNS": "250",
    }


@pytest.fixture
async def api(client: httpx.AsyncClient, ctx: Context) -> httpx.AsyncClient:
    """The API; the network policy lets loopback through (the fakes listen there)."""
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    return client


async def cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, config_app, args, env=env, input=stdin)


async def servers(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await api.get(f"{T}/mail-servers", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"] if isinstance(body, dict) else body
    return {s["name"]: s for s in items}


async def test_dry_run_then_yes_then_again_then_apply_the_written_file(
    api: httpx.AsyncClient, ctx: Context, env: dict[str, str], tmp_path: Path
) -> None:
    sample = str(SAMPLES / "gmail.json")
    dry = await cli(["import-codestream", sample, "--tenant", "acme", "--dry-run"], env)
    assert dry.exit_code == 0, dry.output
    assert "create" in dry.stdout and "codestream-smtp" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    assert (await api.get(T, headers=ADMIN)).status_code == 404

    written = tmp_path / "mailgate.json"
    args = ["import-codestream", sample, "-t", "acme", "--tenant-name", "Acme Corp", "--yes"]
    done = await cli([*args, "-o", str(written)], env)
    assert done.exit_code == 0, done.output
    assert "applied: gmail.json imported into tenant acme" in done.stdout
    assert GMAIL_SECRET not in done.output
    assert '{"env": "MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD"}' in done.stdout
    assert "emailDeliveryService.NodeMailer.password" in done.stdout
    assert (await api.get(T, headers=ADMIN)).json()["name"] == "Acme Corp"
    smtp = (await servers(api))["codestream-smtp"]
    assert (smtp["host"], smtp["port"], smtp["security"]) == ("smtp.gmail.com", 587, "starttls")
    assert (smtp["provider"], smtp["auth"], smtp["username"]) == (
        "gmail",
        "password",
        "codestream@acme.example",
    )
    assert smtp["is_default"] is True and smtp["password_set"] is True
    # The secret is stored, encrypted, with its value from the CodeStream file.
    state = await read_state(ctx, CLI, "acme", secrets=True, missing_ok=False)
    (stored,) = [s for s in state.servers if s.name == "codestream-smtp"]
    assert state.server_secrets[stored.id]["password"] == GMAIL_SECRET
    audit = (await api.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    assert any(a["actor"] == "cli:config" for a in audit)

    # The written file names the secret by reference only.
    text = written.read_text()
    assert GMAIL_SECRET not in text
    assert json.loads(text)["tenants"]["acme"]["mail_servers"]["codestream-smtp"]["password"] == {
        "env": "MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD"
    }

    again = await cli(args, env)
    assert again.exit_code == 0, again.output
    assert "0 create, 0 update, 0 delete" in again.stdout
    assert "applied:" not in again.stdout  # nothing to apply, nothing asked

    # The same servers through `config apply` of the written file: nothing to change.
    secret = {"MAILGATE_SECRET_ACME_CODESTREAM_SMTP_PASSWORD": GMAIL_SECRET}
    applied = await cli(["apply", str(written)], env | secret)
    assert applied.exit_code == 0, applied.output
    assert "0 create, 0 update, 0 delete" in applied.stdout


async def test_without_yes_it_asks_and_changes_nothing_unless_told(
    api: httpx.AsyncClient, env: dict[str, str]
) -> None:
    args = ["import-codestream", str(SAMPLES / "sendgrid.json"), "-t", "acme"]
    no_stdin = await cli(args, env, stdin="")
    assert no_stdin.exit_code == 1
    assert "pass --yes" in no_stdin.output
    refused = await cli(args, env, stdin="n\n")
    assert refused.exit_code == 0 and "nothing was changed" in refused.stdout
    assert (await api.get(T, headers=ADMIN)).status_code == 404
    accepted = await cli(args, env, stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    sendgrid = (await servers(api))["codestream-sendgrid"]
    assert sendgrid["engine"] == "sendgrid" and sendgrid["api_key_set"] is True
    assert sendgrid["options"] == {}  # the file's url is SendGrid's own path
    assert "SG.codestream-canary-key" not in accepted.output


@pytest.mark.parametrize(
    ("sample", "words"),
    [
        ("unknown-service.json", "emailDeliveryService.NodeMailer.service: unknown service"),
        ("no-section.json", "emailDeliveryService: the file has no emailDeliveryService"),
    ],
)
async def test_bad_files_exit_1_naming_the_field(
    api: httpx.AsyncClient, env: dict[str, str], sample: str, words: str
) -> None:
    result = await cli(["import-codestream", str(SAMPLES / sample), "-t", "acme", "--yes"], env)
    assert result.exit_code == 1, result.output
    assert words in " ".join(result.output.split())
    assert "canary" not in result.output
    assert (await api.get(T, headers=ADMIN)).status_code == 404


async def test_a_rule_of_the_services_is_told_at_the_codestream_field(
    api: httpx.AsyncClient, env: dict[str, str], tmp_path: Path
) -> None:
    """The seed's 'insecure SMTP traffic' relay on port 25: refused unless allowed."""
    doc = {"emailDeliveryService": {"NodeMailer": {"host": "relay.acme.example", "port": "25"}}}
    (tmp_path / "cs.json").write_text(json.dumps(doc))
    result = await cli(["import-codestream", str(tmp_path / "cs.json"), "-t", "acme", "-y"], env)
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert "emailDeliveryService.NodeMailer (mail server codestream-smtp), field port" in flat
    assert "MAILGATE_ALLOW_PORT_25" in flat


async def _sender(api: httpx.AsyncClient, server: str) -> dict[str, str]:
    server_id = (await servers(api))[server]["id"]
    account = {
        "address": "codestream@acme.example",
        "display_name": "CodeStream",
        "mail_server_id": server_id,
        "is_default": True,
    }
    r = await api.post(f"{T}/email-accounts", json=account, headers=ADMIN)
    assert r.status_code == 201, r.text
    await api.post(f"{T}/apps", json={"name": "codestream"}, headers=ADMIN)
    token = await api.post(f"{T}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN)
    return bearer(token.json()["token"])


async def _send(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {"to": ["ann@example.com"], "subject": "Welcome", "text": "Hello.", "app": "codestream"}
    r = await api.post(f"{T}/messages", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _status(api: httpx.AsyncClient, message_id: str) -> str:
    r = await api.get(f"{T}/messages/{message_id}", headers=ADMIN)
    return str(r.json()["status"])


async def test_mail_goes_out_through_the_imported_smtp_server(
    api: httpx.AsyncClient, ctx: Context, env: dict[str, str], tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    async with AiosmtpdServer(
        mode="starttls", cert=ca.issue(HOST), user="codestream", password="relay-Pa55-canary"
    ) as smtp:
        relay = json.loads((SAMPLES / "relay.json").read_text())
        node = relay["emailDeliveryService"]["NodeMailer"]
        node |= {"host": HOST, "port": str(smtp.port), "tls": {"ca": ca.ca_pem}}
        (tmp_path / "cs.json").write_text(json.dumps(relay))
        result = await cli(
            ["import-codestream", str(tmp_path / "cs.json"), "-t", "acme", "-y"], env
        )
        assert result.exit_code == 0, result.output
        message_id = await _send(api, await _sender(api, "codestream-smtp"))
        await drain(ctx)  # its engines hang up before the server stops
    # aiosmtpd leaves the server side of STARTTLS sessions to the garbage collector when it
    # stops; collect them here, quietly, so the warning is not blamed on another test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert await _status(api, message_id) == "sent"
    (received,) = smtp.messages
    assert received.rcpt_tos == ("ann@example.com",)
    assert b"Subject: Welcome" in received.data


async def test_mail_goes_out_through_the_imported_sendgrid_path(
    api: httpx.AsyncClient, ctx: Context, env: dict[str, str], tmp_path: Path
) -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        if request.headers.get("authorization") != f"Bearer {SENDGRID_KEY}":
            return HttpResponse.json(401, {"errors": [{"message": "bad key"}]})
        if (request.method, request.path) == ("GET", "/relay/v3/scopes"):
            return HttpResponse.json(200, {"scopes": ["mail.send"]})
        if (request.method, request.path) == ("POST", "/relay/v3/mail/send"):
            if not request.json():
                return HttpResponse.json(400, {"errors": [{"message": "no personalizations"}]})
            return HttpResponse(202, headers={"X-Message-Id": "sg-imported-1"})
        return HttpResponse(404)

    async with HttpServer(handler) as api_server:
        url = f"{api_server.url()}/relay/v3/mail/send"
        doc = {"emailDeliveryService": {"sendgrid": {"apiKey": SENDGRID_KEY, "url": url}}}
        (tmp_path / "cs.json").write_text(json.dumps(doc))
        result = await cli(
            ["import-codestream", str(tmp_path / "cs.json"), "-t", "acme", "-y"], env
        )
        assert result.exit_code == 0, result.output
        server = (await servers(api))["codestream-sendgrid"]
        assert server["api_base_url"] == api_server.url()
        assert server["options"] == {"send_path": "/relay/v3/mail/send"}
        # Test Connection checks the key next to the path and the path itself.
        report = (await api.post(f"{T}/mail-servers/{server['id']}/test", headers=ADMIN)).json()
        assert report["ok"] is True, report["error"]
        message_id = await _send(api, await _sender(api, "codestream-sendgrid"))
        await drain(ctx)
    assert await _status(api, message_id) == "sent"
    paths = [(r.method, r.path) for r in api_server.requests]
    assert paths == [
        ("GET", "/relay/v3/scopes"),
        ("POST", "/relay/v3/mail/send"),
        ("POST", "/relay/v3/mail/send"),
    ]
    assert api_server.requests[-1].json()["personalizations"] == [
        {"to": [{"email": "ann@example.com"}]}
    ]
