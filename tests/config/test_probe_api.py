"""Test connection over the API (API.md "Mail servers"; SPEC.md 5), on SQLite and PostgreSQL.

The probe runs against aiosmtpd on 127.0.0.1 (STARTTLS with a certificate for 127.0.0.1
issued by a throwaway CA that only the server settings trust). Where a request must open no
connection, a counting listener proves it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mailgate.errors import RateLimited
from mailgate.services.context import Context, InstancePolicy
from mailgate.services.ratelimit import ProbeLimits, ProbeRateLimit, SlidingWindow
from mailgate.web.app import create_app
from tests.config.helpers import field_names, new_tenant, token_for
from tests.conftest import ADMIN
from tests.engines.probe_support import PASSWORD, USER, SmtpServer
from tests.support.tls import TestCA

LOOPBACK = "127.0.0.1"
BASE = "/api/v1/tenants/acme/mail-servers"


# Shared with the CLI and hardening tests -------------------------------------------------


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts accepted connections.

    It answers each with ``554`` (no service) and hangs up, so a probe that does reach it
    ends quickly with ``server_rejected``.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingListener:
        self._server = await asyncio.start_server(self._on_client, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(ConnectionError):
            writer.write(b"554 5.3.2 counting listener\r\n")
            await writer.drain()
        writer.close()

    async def settled(self) -> int:
        """The count once connections already queued by the kernel have been accepted."""
        await asyncio.sleep(0.1)
        return self.accepted


def smtp_body(port: int, ca_pem: str, /, **overrides: Any) -> dict[str, Any]:
    """Create-body settings for the aiosmtpd user on 127.0.0.1:``port`` (STARTTLS)."""
    body: dict[str, Any] = {
        "name": "Loopback",
        "host": LOOPBACK,
        "port": port,
        "security": "starttls",
        "auth": "password",
        "username": USER,
        "password": PASSWORD,
        "ca_certificates": ca_pem,
        "timeout_seconds": 5,
    }
    body.update(overrides)
    return body


def probe_app(ctx: Context) -> FastAPI:
    """The API app (its test-connection routes included)."""
    return create_app(ctx)


@contextlib.asynccontextmanager
async def api_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailgate.test") as c:
        yield c


# Fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    async with CountingListener() as counting:
        yield counting


@pytest.fixture
async def api(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a context whose network policy lets loopback through."""
    ctx.policy = InstancePolicy(allowed_networks=("127.0.0.0/8",))
    async with api_client(probe_app(ctx)) as client:
        await new_tenant(client)
        yield client


async def _saved(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await api.post(BASE, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# The report ------------------------------------------------------------------------------


async def test_saved_server_starttls_and_auth(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    server_id = await _saved(api, smtp_body(smtp.port, ca.ca_pem))
    r = await api.post(f"{BASE}/{server_id}/test", headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is True and report["error"] is None, report["error"]
    assert report["security"] == "STARTTLS" and report["authenticated"] is True
    assert report["tls"]["version"].startswith("TLSv1.")
    assert report["tls"]["certificate"]["verified"] is True
    assert "Mailgate Test CA" in report["tls"]["certificate"]["issuer"]
    assert "AUTH" in report["server"]["extensions"]  # as offered after STARTTLS
    assert "PLAIN" in report["server"]["auth_mechanisms"]
    assert [s["name"] for s in report["steps"]] == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo_after_tls",
        "auth",
        "quit",
    ]
    assert all(s["ok"] and s["ms"] >= 0 for s in report["steps"])
    assert "AUTH" in smtp.commands and smtp.transaction_commands() == []


async def test_wrong_password_is_auth_failed(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    body = smtp_body(smtp.port, ca.ca_pem, password="not-the-password")
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is False and report["authenticated"] is False
    assert report["error"]["code"] == "auth_failed"
    assert report["error"]["hint"] and report["error"]["message"]
    assert smtp.transaction_commands() == []


async def test_unsaved_settings_need_no_name(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    body = smtp_body(smtp.port, ca.ca_pem)
    del body["name"]
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


@pytest.mark.parametrize("password", [None, ""])
async def test_unsaved_with_server_id_reuses_the_stored_password(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, password: str | None
) -> None:
    server_id = await _saved(api, smtp_body(smtp.port, ca.ca_pem))
    body = smtp_body(smtp.port, ca.ca_pem, server_id=server_id, password=password)
    if password is None:
        del body["password"]
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True and r.json()["authenticated"] is True


async def test_unsaved_without_server_id_needs_the_password(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    body = smtp_body(smtp.port, ca.ca_pem)
    del body["password"]
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["password"]


@pytest.mark.parametrize("change", ["host", "port", "username", "security"])
async def test_changed_destination_never_gets_the_stored_password(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, listener: CountingListener, change: str
) -> None:
    server_id = await _saved(api, smtp_body(smtp.port, ca.ca_pem))
    changed = {
        "host": {"host": "127.0.0.2"},
        "port": {"port": listener.port},
        "username": {"username": "someone-else"},
        "security": {"security": "tls"},
    }[change]
    body = smtp_body(listener.port, ca.ca_pem, server_id=server_id, **changed)
    if change != "port":
        body["port"] = smtp.port
    del body["password"]
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["password"]
    assert change in r.json()["errors"][0]["message"]
    assert await listener.settled() == 0
    assert smtp.commands == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 25}, "port"),
        ({"port": 0}, "port"),
        ({"host": None}, "host"),
        ({"username": None}, "username"),
        ({"security": "none"}, "allow_insecure_auth"),
        ({"provider": "no-such-provider"}, "provider"),
        ({"options": {"ehlo_name": "a\r\nb"}}, "options.ehlo_name"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_settings_are_422_naming_the_field(
    api: httpx.AsyncClient, listener: CountingListener, overrides: dict[str, Any], field: str
) -> None:
    body = smtp_body(listener.port, "", **overrides)
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in field_names(r)
    assert await listener.settled() == 0


async def test_verification_off_is_reported_as_a_warning(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    body = smtp_body(smtp.port, "", ca_certificates=None, verify_certificate=False)
    r = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    report = r.json()
    assert report["ok"] is True, report
    assert report["tls"]["certificate"]["verified"] is False
    assert any("verification is off" in w for w in report["warnings"])


async def test_untrusted_certificate_fails_closed(api: httpx.AsyncClient, smtp: SmtpServer) -> None:
    body = smtp_body(smtp.port, "", ca_certificates=None)
    report = (await api.post(f"{BASE}/test", json=body, headers=ADMIN)).json()
    assert report["ok"] is False and report["error"]["code"] == "certificate_untrusted"
    assert "AUTH" not in smtp.commands


async def test_a_ca_keystore_is_trusted_by_name_and_read_at_each_test(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA, tmp_path: Path
) -> None:
    def b64(pem: str) -> str:
        return base64.b64encode(pem.encode()).decode()

    keystores = BASE.replace("/mail-servers", "/keystores")
    store = await api.post(
        keystores, json={"name": "corp-ca", "kind": "ca", "content": b64(ca.ca_pem)}, headers=ADMIN
    )
    assert store.status_code == 201, store.text
    body = smtp_body(smtp.port, "", ca_certificates=None, ca_keystore="corp-ca")
    unsaved = (await api.post(f"{BASE}/test", json=body, headers=ADMIN)).json()
    assert unsaved["ok"] is True, unsaved["error"]
    assert unsaved["tls"]["certificate"]["verified"] is True
    server_id = await _saved(api, body)
    saved = (await api.post(f"{BASE}/{server_id}/test", headers=ADMIN)).json()
    assert saved["ok"] is True, saved["error"]
    other = TestCA(tmp_path / "other", name="Another CA")
    r = await api.patch(
        f"{keystores}/{store.json()['id']}", json={"content": b64(other.ca_pem)}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    report = (await api.post(f"{BASE}/{server_id}/test", headers=ADMIN)).json()
    assert report["ok"] is False and report["error"]["code"] == "certificate_untrusted"


# Permissions, tenants and the network policy ---------------------------------------------


async def test_listener_counts_connections(
    api: httpx.AsyncClient, listener: CountingListener
) -> None:
    """The control for the tests below: a permitted probe does reach the listener."""
    body = smtp_body(listener.port, "", auth="none", security="none")
    report = (await api.post(f"{BASE}/test", json=body, headers=ADMIN)).json()
    assert report["error"]["code"] == "server_rejected"
    assert await listener.settled() == 1


@pytest.mark.parametrize("role", ["developer", "sender", "viewer"])
async def test_roles_without_manage_get_403_and_open_no_connection(
    api: httpx.AsyncClient, listener: CountingListener, role: str
) -> None:
    body = smtp_body(listener.port, "", auth="none", security="none")
    server_id = await _saved(api, body)
    headers = await token_for(api, "acme", role)
    saved = await api.post(f"{BASE}/{server_id}/test", headers=headers)
    unsaved = await api.post(f"{BASE}/test", json=body, headers=headers)
    assert (saved.status_code, unsaved.status_code) == (403, 403)
    assert "email_configurations:manage" in saved.json()["detail"]
    assert await listener.settled() == 0


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_roles_with_manage_may_test(
    api: httpx.AsyncClient, listener: CountingListener, role: str
) -> None:
    body = smtp_body(listener.port, "", auth="none", security="none")
    headers = await token_for(api, "acme", role)
    r = await api.post(f"{BASE}/test", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["error"]["code"] == "server_rejected"


async def test_other_tenants_objects_are_404(
    api: httpx.AsyncClient, listener: CountingListener
) -> None:
    body = smtp_body(listener.port, "", auth="none", security="none")
    server_id = await _saved(api, body)
    await new_tenant(api, "other")
    other_owner = await token_for(api, "other", "owner")
    assert (await api.post(f"{BASE}/{server_id}/test", headers=other_owner)).status_code == 404
    r = await api.post(f"{BASE}/test", json=body, headers=other_owner)
    assert r.status_code == 404
    own_base = "/api/v1/tenants/other/mail-servers"
    r = await api.post(f"{own_base}/{server_id}/test", headers=other_owner)
    assert r.status_code == 404
    r = await api.post(f"{own_base}/test", json={**body, "server_id": server_id}, headers=ADMIN)
    assert r.status_code == 404
    assert (await api.post(f"{BASE}/nope/test", headers=ADMIN)).status_code == 404
    assert (await api.post(f"{BASE}/test", json=body)).status_code == 401
    assert await listener.settled() == 0


async def test_default_policy_refuses_loopback_without_connecting(
    ctx: Context, listener: CountingListener
) -> None:
    assert ctx.policy.allowed_networks == ()
    async with api_client(probe_app(ctx)) as client:
        await new_tenant(client)
        body = smtp_body(listener.port, "", auth="none", security="none")
        server_id = await _saved(client, body)
        for response in (
            await client.post(f"{BASE}/{server_id}/test", headers=ADMIN),
            await client.post(f"{BASE}/test", json=body, headers=ADMIN),
        ):
            report = response.json()
            assert response.status_code == 200 and report["ok"] is False
            assert report["error"]["code"] == "destination_refused"
            assert "MAILGATE_ALLOWED_NETWORKS" in report["error"]["hint"]
            assert report["steps"] == [
                {"name": "connect", "ok": False, "ms": report["steps"][0]["ms"]}
            ]
    assert await listener.settled() == 0


async def test_test_is_audited_without_secrets(
    api: httpx.AsyncClient, smtp: SmtpServer, ca: TestCA
) -> None:
    server_id = await _saved(api, smtp_body(smtp.port, ca.ca_pem))
    owner = await token_for(api, "acme", "owner")
    await api.post(f"{BASE}/{server_id}/test", headers=owner)
    await api.post(
        f"{BASE}/test", json=smtp_body(smtp.port, ca.ca_pem, password="x"), headers=owner
    )
    r = await api.get("/api/v1/tenants/acme/audit", headers=ADMIN)
    tests = [e for e in r.json()["items"] if e["action"] == "mail_server.test"]
    assert len(tests) == 2
    unsaved, saved = tests  # newest first
    assert saved["object"] == {"type": "mail_server", "id": server_id, "name": "Loopback"}
    assert saved["actor"] == "token:owner-token"
    assert "result:ok" in saved["changes"] and "saved" in saved["changes"]
    assert unsaved["object"]["id"] is None and "result:auth_failed" in unsaved["changes"]
    assert PASSWORD not in r.text


# Rate limits -----------------------------------------------------------------------------


async def test_eleventh_probe_is_429_and_opens_no_connection(
    api: httpx.AsyncClient, listener: CountingListener
) -> None:
    headers = await token_for(api, "acme", "admin")
    with SmtpServer(mode="plain") as plain:
        body = smtp_body(plain.port, "", auth="none", security="none")
        for _ in range(10):
            r = await api.post(f"{BASE}/test", json=body, headers=headers)
            assert r.status_code == 200 and r.json()["ok"] is True, r.text
    limited = smtp_body(listener.port, "", auth="none", security="none")
    r = await api.post(f"{BASE}/test", json=limited, headers=headers)
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert await listener.settled() == 0
    # Another principal of the same tenant still has its own allowance.
    r = await api.post(f"{BASE}/test", json=limited, headers=ADMIN)
    assert r.status_code == 200 and await listener.settled() == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_admits_limit_events_per_window() -> None:
    clock = FakeClock()
    window = SlidingWindow(3, 60.0, clock=clock)
    for step in range(3):
        assert window.wait("k") == 0.0
        window.record("k")
        clock.now += 10 * (step + 1)  # events at 1000, 1010, 1030
    clock.now = 1040.0
    assert window.wait("k") == pytest.approx(20.0)  # the event at 1000 leaves at 1060
    assert window.wait("other") == 0.0
    clock.now = 1060.0
    assert window.wait("k") == 0.0
    window.record("k")
    assert window.wait("k") == pytest.approx(10.0)  # now the event at 1010 must leave
    clock.now = 1200.0
    assert window.wait("k") == 0.0
    assert window._events == {}  # idle keys are forgotten


def test_probe_rate_limit_per_principal_and_per_tenant() -> None:
    clock = FakeClock()
    limits = ProbeRateLimit(ProbeLimits(per_principal=2, per_tenant=3), clock=clock)
    limits.acquire(principal="a", tenant="t")
    limits.acquire(principal="a", tenant="t")
    with pytest.raises(RateLimited) as principal_limited:
        limits.acquire(principal="a", tenant="t")
    assert principal_limited.value.retry_after == 60
    limits.acquire(principal="b", tenant="t")  # the refused attempt did not count
    clock.now += 0.5
    with pytest.raises(RateLimited) as tenant_limited:
        limits.acquire(principal="c", tenant="t")
    assert "this tenant" in tenant_limited.value.detail
    assert tenant_limited.value.retry_after == 60  # 59.5 s, rounded up
    limits.acquire(principal="c", tenant="u")  # other tenants are not affected
    clock.now += 60
    limits.acquire(principal="a", tenant="t")


def test_default_limits_are_the_documented_ones() -> None:
    limits = ProbeLimits()
    assert (limits.per_principal, limits.per_tenant, limits.window_seconds) == (10, 30, 60.0)
