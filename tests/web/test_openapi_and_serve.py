"""`mailgate serve` answers /healthz and /openapi.json; the OpenAPI lists every route."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailgate.services.demo import DEMO_SENDER
from tests.support.serve import mailgate_env, serve
from tests.support.smtp_servers import free_port

# Every route of API.md implemented so far: (method, path).
ROUTES = [
    ("get", "/api/v1/providers"),
    ("get", "/api/v1/providers/resolve"),
    ("post", "/api/v1/tenants"),
    ("get", "/api/v1/tenants"),
    ("get", "/api/v1/tenants/{tenant}"),
    ("patch", "/api/v1/tenants/{tenant}"),
    ("delete", "/api/v1/tenants/{tenant}"),
    ("post", "/api/v1/tenants/{tenant}/tokens"),
    ("get", "/api/v1/tenants/{tenant}/tokens"),
    ("delete", "/api/v1/tenants/{tenant}/tokens/{token_id}"),
    ("post", "/api/v1/tenants/{tenant}/users"),
    ("get", "/api/v1/tenants/{tenant}/users"),
    ("patch", "/api/v1/tenants/{tenant}/users/{user_id}"),
    ("delete", "/api/v1/tenants/{tenant}/users/{user_id}"),
    ("get", "/api/v1/tenants/{tenant}/stages"),
    ("post", "/api/v1/tenants/{tenant}/stages"),
    ("delete", "/api/v1/tenants/{tenant}/stages/{name}"),
    ("get", "/api/v1/tenants/{tenant}/mail-servers"),
    ("post", "/api/v1/tenants/{tenant}/mail-servers"),
    ("get", "/api/v1/tenants/{tenant}/mail-servers/{server_id}"),
    ("patch", "/api/v1/tenants/{tenant}/mail-servers/{server_id}"),
    ("delete", "/api/v1/tenants/{tenant}/mail-servers/{server_id}"),
    ("get", "/api/v1/tenants/{tenant}/email-accounts"),
    ("post", "/api/v1/tenants/{tenant}/email-accounts"),
    ("get", "/api/v1/tenants/{tenant}/email-accounts/{account_id}"),
    ("patch", "/api/v1/tenants/{tenant}/email-accounts/{account_id}"),
    ("delete", "/api/v1/tenants/{tenant}/email-accounts/{account_id}"),
    ("post", "/api/v1/tenants/{tenant}/email-accounts/{account_id}/sync"),
    ("get", "/api/v1/tenants/{tenant}/email-accounts/{account_id}/inbox"),
    ("get", "/api/v1/tenants/{tenant}/apps"),
    ("post", "/api/v1/tenants/{tenant}/apps"),
    ("get", "/api/v1/tenants/{tenant}/apps/{name}"),
    ("patch", "/api/v1/tenants/{tenant}/apps/{name}"),
    ("delete", "/api/v1/tenants/{tenant}/apps/{name}"),
    ("get", "/api/v1/tenants/{tenant}/apps/{name}/test-list"),
    ("put", "/api/v1/tenants/{tenant}/apps/{name}/test-list"),
    ("get", "/api/v1/tenants/{tenant}/apps/{name}/stages/{stage}/test-list"),
    ("put", "/api/v1/tenants/{tenant}/apps/{name}/stages/{stage}/test-list"),
    ("get", "/api/v1/tenants/{tenant}/audit"),
    ("post", "/api/v1/tenants/{tenant}/mail-servers/test"),
    ("post", "/api/v1/tenants/{tenant}/mail-servers/{server_id}/test"),
    ("post", "/api/v1/tenants/{tenant}/messages"),
    ("post", "/api/v1/tenants/{tenant}/messages/batch"),
    ("get", "/api/v1/tenants/{tenant}/messages"),
    ("get", "/api/v1/tenants/{tenant}/messages/stats"),
    ("get", "/api/v1/tenants/{tenant}/messages/{message_id}"),
    ("post", "/api/v1/tenants/{tenant}/messages/{message_id}/retry"),
    ("post", "/api/v1/tenants/{tenant}/messages/{message_id}/cancel"),
    ("post", "/api/v1/tenants/{tenant}/keystores"),
    ("get", "/api/v1/tenants/{tenant}/keystores"),
    ("delete", "/api/v1/tenants/{tenant}/keystores/{keystore_id}"),
    ("post", "/api/v1/tenants/{tenant}/dkim-keys"),
    ("get", "/api/v1/tenants/{tenant}/dkim-keys"),
    ("delete", "/api/v1/tenants/{tenant}/dkim-keys/{key_id}"),
    ("get", "/api/v1/tenants/{tenant}/templates/{name}"),
    ("put", "/api/v1/tenants/{tenant}/templates/{name}"),
    ("delete", "/api/v1/tenants/{tenant}/templates/{name}"),
    ("get", "/api/v1/tenants/{tenant}/webhooks"),
    ("post", "/api/v1/tenants/{tenant}/webhooks"),
    ("delete", "/api/v1/tenants/{tenant}/webhooks/{webhook_id}"),
    ("patch", "/api/v1/tenants/{tenant}/webhooks/{webhook_id}"),
    ("post", "/api/v1/tenants/{tenant}/webhooks/{webhook_id}/rotate-secret"),
]


SMTP_PORT = free_port()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real `mailgate serve --demo` process on a free port (SMTP submission on
    ``SMTP_PORT``); yields its URL and output."""
    workdir: Path = tmp_path_factory.mktemp("serve")
    env = mailgate_env(workdir / "var", MAILGATE_SMTP_PORT=str(SMTP_PORT))
    with serve(workdir, "--demo", env=env) as served:
        yield served.url, served.output


def test_serve_answers_health_and_openapi(served: tuple[str, str]) -> None:
    url, output = served
    assert httpx.get(f"{url}/healthz").text == "ok"
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    workers = body.pop("worker_processes")
    assert body == {
        "database": True,
        "keys": True,
        "workers": {"loops": 1, "claiming": 1, "problems": []},
    }
    # serve's own workers beat (worker processes beside it may not have yet).
    assert workers["expected"] is None and workers["problem"] is None
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["info"]["title"] == "Mailgate"
    assert "owner token" in output and "curl" in output
    assert "alembic" not in output  # upgrading the schema at start is not news


def test_demo_token_works(served: tuple[str, str]) -> None:
    url, output = served
    token = next(line.strip() for line in output.splitlines() if line.strip().startswith("mg_"))
    r = httpx.get(
        f"{url}/api/v1/tenants/demo/mail-servers", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    [server] = r.json()["items"]
    assert server["engine"] == "capture" and server["is_default"] is True
    assert sorted(server["stages"]) == ["development", "production", "test"]


def test_serve_accepts_smtp_submission(served: tuple[str, str]) -> None:
    """`serve` runs the submission listener: an app speaking SMTP gets its mail delivered."""
    url, output = served
    token = next(line.strip() for line in output.splitlines() if line.strip().startswith("mg_"))
    message = (
        f"From: Demo <{DEMO_SENDER}>\r\nTo: someone@example.test\r\n"
        "Subject: over SMTP\r\n\r\nHello from an SMTP client.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as client:
        client.login("demo", token)
        refused = client.sendmail(DEMO_SENDER, ["someone@example.test"], message)
    assert refused == {}
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = httpx.get(f"{url}/api/v1/tenants/demo/messages", headers=headers).json()["items"]
        mine = [m for m in found if m["subject"] == "over SMTP"]
        if mine and mine[0]["status"] == "sent":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the submitted message was not sent: {found}")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_openapi_lists_route_with_schemas(served: tuple[str, str], method: str, path: str) -> None:
    spec = httpx.get(f"{served[0]}/openapi.json").json()
    operation = spec["paths"][path][method]
    ok = next(code for code in operation["responses"] if code.startswith("2"))
    if ok != "204":
        assert "schema" in operation["responses"][ok]["content"]["application/json"]
    if method in ("post", "patch", "put") and "requestBody" in operation:
        assert "schema" in operation["requestBody"]["content"]["application/json"]
    elif method in ("patch", "put"):
        pytest.fail(f"{method.upper()} {path} has no request body schema")
