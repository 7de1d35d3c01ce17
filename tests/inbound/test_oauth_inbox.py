"""OAuth inboxes against a real Dovecot: AUTHENTICATE XOAUTH2 checked by Dovecot's oauth2
passdb through a loopback introspection endpoint; tokens from loopback token endpoints for
Microsoft (client credentials) and Google (JWT bearer, signature checked)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailgate.engines.oauth.tokens import JWT_BEARER, OUTLOOK_APP_SCOPE
from mailgate.runtime import Context
from mailgate.storage.base import utcnow
from mailgate.worker.imap_sync import ImapSyncScheduler, SchedulerOptions
from tests.config.helpers import new_tenant
from tests.conftest import ADMIN
from tests.inbound.bounces import plain_mail
from tests.inbound.conftest import PASSWORD, T
from tests.inbound.dovecot import Dovecot, doveadm_binary, dovecot_binary
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.tls import TestCA

CLIENT_SECRET = "canary-imap-client-secret-7f3e"
SA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json() -> str:
    pem = SA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {"type": "service_account", "client_email": "sync@proj.example", "private_key": pem}
    )


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass
class OAuthWorld:
    """Token endpoints that issue tokens and the introspection endpoint Dovecot asks."""

    active: dict[str, str] = field(default_factory=dict)  # token -> username
    issued: list[dict[str, str]] = field(default_factory=list)  # token request forms
    introspected: list[str] = field(default_factory=list)
    refusal: str | None = None
    user: str = "alice"

    async def microsoft(self, request: HttpRequest) -> HttpResponse:
        form = request.form()
        self.issued.append(form)
        if self.refusal or form.get("client_secret") != CLIENT_SECRET:
            return HttpResponse.json(400, {"error": self.refusal or "invalid_client"})
        assert form["grant_type"] == "client_credentials"
        return self._issue("ms")

    async def google(self, request: HttpRequest) -> HttpResponse:
        form = request.form()
        self.issued.append(form)
        assert form["grant_type"] == JWT_BEARER
        head, claims, signature = form["assertion"].split(".")
        SA_KEY.public_key().verify(
            _b64(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        body = json.loads(_b64(claims))
        if body.get("sub") != self.user or body.get("scope") != "https://mail.google.com/":
            return HttpResponse.json(400, {"error": "unauthorized_client"})
        return self._issue("g")

    def _issue(self, prefix: str) -> HttpResponse:
        token = f"{prefix}-token-{len(self.active) + 1}"
        self.active[token] = self.user
        return HttpResponse.json(200, {"access_token": token, "expires_in": 3600})

    async def introspect(self, request: HttpRequest) -> HttpResponse:
        token = request.form().get("token", "")
        self.introspected.append(token)
        if token in self.active:
            return HttpResponse.json(200, {"active": True, "username": self.active[token]})
        return HttpResponse.json(200, {"active": False})


@dataclass
class Servers:
    world: OAuthWorld
    tokens: HttpServer
    dovecot: Dovecot
    ca: TestCA


@pytest.fixture
async def servers(ca: TestCA) -> AsyncIterator[Servers]:
    if dovecot_binary() is None or doveadm_binary() is None:
        pytest.skip("Dovecot is not installed: run `bash scripts/install_dovecot.sh` (as root)")
    world = OAuthWorld()

    async def route(request: HttpRequest) -> HttpResponse:
        if request.path == "/introspect":
            return await world.introspect(request)
        if request.path.startswith("/google"):
            return await world.google(request)
        return await world.microsoft(request)

    async with HttpServer(route) as http:
        dovecot = Dovecot(
            cert=ca.issue("127.0.0.1"),
            sni_cert=ca.issue("imap.mailgate.test"),
            users={"alice": PASSWORD},
            oauth2_introspection=f"{http.url()}/introspect",
        )
        try:
            yield Servers(world, http, dovecot, ca)
        finally:
            dovecot.stop()


@dataclass
class Account:
    client: httpx.AsyncClient
    ctx: Context
    id: str

    @property
    def url(self) -> str:
        return f"{T}/email-accounts/{self.id}"

    async def test(self) -> dict[str, Any]:
        r = await self.client.post(f"{self.url}/test-inbox", headers=ADMIN)
        assert r.status_code == 200, r.text
        return dict(r.json())


def microsoft_imap(servers: Servers, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": servers.dovecot.tls_port,
        "security": "tls",
        "username": "alice",
        "auth": "xoauth2",
        "ca_certificates": servers.ca.ca_pem,
        "oauth": {
            "provider": "microsoft",
            "client_id": "app-1",
            "client_secret": CLIENT_SECRET,
            "token_url": f"{servers.tokens.url()}/tenant-1/oauth2/v2.0/token",
        },
        **extra,
    }


def google_imap(servers: Servers) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": servers.dovecot.starttls_port,
        "security": "starttls",
        "username": "alice",
        "auth": "xoauth2",
        "ca_certificates": servers.ca.ca_pem,
        "oauth": {
            "provider": "google",
            "service_account_json": service_account_json(),
            "token_url": f"{servers.tokens.url()}/google/token",
        },
    }


async def make_account(
    client: httpx.AsyncClient, ctx: Context, imap: dict[str, Any]
) -> tuple[Account, httpx.Response]:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert capture.status_code == 201, capture.text
    r = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": capture.json()["id"],
            "imap": imap,
        },
        headers=ADMIN,
    )
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.1/32",))
    return Account(client, ctx, r.json().get("id", "")), r


@pytest.fixture
def no_system_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test CA is trusted only through the account's ca_certificates."""
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))


async def test_microsoft_client_credentials_inbox_syncs_over_xoauth2(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    account, r = await make_account(client, ctx, microsoft_imap(servers))
    assert r.status_code == 201, r.text
    out = r.json()["imap"]
    assert out["auth"] == "xoauth2"
    assert out["oauth"]["client_secret_set"] is True
    assert CLIENT_SECRET not in r.text
    servers.dovecot.deliver("alice", plain_mail("Hello", message_id="<o1@example.com>"))

    sync = await client.post(f"{account.url}/sync", headers=ADMIN)

    assert sync.status_code == 200, sync.text
    assert sync.json()["stored"] == 1
    form = servers.world.issued[-1]
    assert form["client_id"] == "app-1" and form["scope"] == OUTLOOK_APP_SCOPE
    assert servers.world.introspected == ["ms-token-1"]


async def test_google_jwt_bearer_inbox_over_starttls_reports_each_step(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    account, r = await make_account(client, ctx, google_imap(servers))
    assert r.status_code == 201, r.text
    assert r.json()["imap"]["oauth"]["service_account_json_set"] is True
    assert "PRIVATE KEY" not in r.text
    servers.dovecot.deliver("alice", plain_mail("One", message_id="<g1@example.com>"))

    report = await account.test()

    assert report["ok"] is True, report
    assert report["error"] is None
    assert [s["name"] for s in report["steps"]] == [
        "token",
        "connect",
        "greeting",
        "starttls",
        "authenticate",
        "select",
    ]
    assert all(s["ok"] for s in report["steps"])
    assert report["messages"] == 1 and report["auth"] == "xoauth2"
    assert servers.world.introspected == ["g-token-1"]
    # A test stores nothing.
    items = await client.get(f"{account.url}/inbox", headers=ADMIN)
    assert items.json()["items"] == []


async def test_a_token_the_server_rejects_fails_at_authenticate(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    account, r = await make_account(client, ctx, microsoft_imap(servers))
    assert r.status_code == 201, r.text
    servers.world.user = "bob"  # tokens are issued for another mailbox

    report = await account.test()
    sync = await client.post(f"{account.url}/sync", headers=ADMIN)

    assert report["ok"] is False
    assert report["steps"][-1] == {**report["steps"][-1], "name": "authenticate", "ok": False}
    assert report["error"]["code"] == "auth_failed"
    assert report["error"]["field"] == "imap.username"
    assert "domain-wide delegation" in report["error"]["hint"]
    assert sync.status_code == 502
    assert sync.json()["code"] == "auth_failed"
    for text in (json.dumps(report), sync.text):
        assert "ms-token" not in text and CLIENT_SECRET not in text


async def test_a_token_endpoint_refusal_is_oauth_refused(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    account, r = await make_account(client, ctx, microsoft_imap(servers))
    assert r.status_code == 201, r.text
    servers.world.refusal = "invalid_client"

    report = await account.test()

    assert report["ok"] is False
    assert [s["name"] for s in report["steps"]] == ["token"]
    assert report["error"]["code"] == "oauth_refused"
    assert report["error"]["field"] == "imap.oauth"
    assert "invalid_client" in report["error"]["message"]
    assert CLIENT_SECRET not in json.dumps(report)
    assert servers.world.introspected == []  # nothing reached the IMAP server


async def test_the_scheduler_syncs_an_oauth_inbox(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    account, r = await make_account(client, ctx, microsoft_imap(servers))
    assert r.status_code == 201, r.text
    servers.dovecot.deliver("alice", plain_mail("Sched", message_id="<s1@example.com>"))
    now = utcnow() + timedelta(hours=1)
    scheduler = ImapSyncScheduler(ctx, options=SchedulerOptions(interval=60), clock=lambda: now)

    assert await scheduler.run_once() == 1

    items = await client.get(f"{account.url}/inbox", headers=ADMIN)
    assert [i["subject"] for i in items.json()["items"]] == ["Sched"]


async def test_the_account_ca_is_trusted_for_its_inbox_only(
    client: httpx.AsyncClient, ctx: Context, servers: Servers, no_system_trust: None
) -> None:
    imap = {
        "host": "127.0.0.1",
        "port": servers.dovecot.tls_port,
        "username": "alice",
        "password": PASSWORD,
    }
    account, r = await make_account(client, ctx, imap)
    assert r.status_code == 201, r.text

    untrusted = await account.test()
    assert untrusted["error"]["code"] == "certificate_untrusted"
    assert "imap.ca_certificates" in untrusted["error"]["hint"]
    assert [s["name"] for s in untrusted["steps"]] == ["connect", "tls"]

    r = await client.patch(
        account.url,
        json={"imap": {**imap, "ca_certificates": servers.ca.ca_pem}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert r.json()["imap"]["ca_certificates"] == servers.ca.ca_pem
    trusted = await account.test()
    assert trusted["ok"] is True, trusted
    assert [s["name"] for s in trusted["steps"]] == [
        "connect",
        "tls",
        "greeting",
        "login",
        "select",
    ]
