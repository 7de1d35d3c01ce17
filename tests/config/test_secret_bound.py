"""A stored secret never follows an edited endpoint (API PATCH, unsaved test, IMAP)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.config.helpers import create_server, field_names, new_tenant
from tests.config.test_probe_api import CountingListener, api_client, probe_app
from tests.conftest import ADMIN

BASE = "/api/v1/tenants/acme/mail-servers"

SENDGRID = {"name": "SG", "engine": "sendgrid", "api_key": "SG.stored-key-1"}
GRAPH = {
    "name": "Graph",
    "engine": "msgraph",
    "sender_upn": "mailer@acme.example",
    "oauth": {
        "provider": "microsoft",
        "client_id": "cid",
        "tenant_id": "tid",
        "client_secret": "graph-secret-1",
    },
}


async def _create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(BASE, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


@pytest.mark.parametrize(
    ("body", "change", "secret"),
    [
        (SENDGRID, {"api_base_url": "https://attacker.example/v3"}, {"api_key": "SG.new-2"}),
        (
            GRAPH,
            {"oauth": {"provider": "microsoft", "token_url": "https://attacker.example/t"}},
            {"oauth": {"provider": "microsoft", "client_secret": "graph-secret-2"}},
        ),
        (
            GRAPH,
            {"oauth": {"provider": "microsoft", "tenant_id": "other-tenant"}},
            {"oauth": {"provider": "microsoft", "client_secret": "graph-secret-2"}},
        ),
        (None, {"verify_certificate": False}, {"password": "new-secret-77"}),
        (None, {"ca_certificates": "-----BEGIN CERTIFICATE-----"}, {"password": "new-77"}),
        (None, {"allow_insecure_auth": True}, {"password": "new-secret-77"}),
    ],
)
async def test_fields_deciding_where_a_secret_goes_require_it_again(
    client: httpx.AsyncClient,
    body: dict[str, Any] | None,
    change: dict[str, Any],
    secret: dict[str, Any],
) -> None:
    await new_tenant(client)
    server = await _create(client, body) if body else await create_server(client, "acme")
    secret_field = next(iter(secret))
    named = secret_field if secret_field != "oauth" else "oauth.client_secret"
    r = await client.patch(f"{BASE}/{server['id']}", json=change, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [named]
    unchanged = (await client.get(f"{BASE}/{server['id']}", headers=ADMIN)).json()
    assert unchanged["version"] == server["version"]
    merged = {**change, **secret}
    if "oauth" in change:
        merged["oauth"] = {**change["oauth"], **secret["oauth"]}
    r = await client.patch(f"{BASE}/{server['id']}", json=merged, headers=ADMIN)
    assert r.status_code == 200, r.text


async def test_unchanged_secret_bound_values_need_no_secret(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await _create(client, {**SENDGRID, "api_base_url": "https://api.sendgrid.com/v3"})
    same = {"api_base_url": "https://api.sendgrid.com/v3", "timeout_seconds": 12}
    r = await client.patch(f"{BASE}/{server['id']}", json=same, headers=ADMIN)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "change",
    [
        {"verify_certificate": False},
        {"ca_certificates": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
    ],
)
async def test_unsaved_test_with_server_id_needs_the_secret_for_new_tls_trust(
    ctx: Any, change: dict[str, Any]
) -> None:
    from mailgate.services.context import InstancePolicy

    ctx.policy = InstancePolicy(allowed_networks=("127.0.0.0/8",))
    async with CountingListener() as listener, api_client(probe_app(ctx)) as api:
        await new_tenant(api)
        body = {
            "name": "Loopback",
            "host": "127.0.0.1",
            "port": listener.port,
            "security": "starttls",
            "auth": "password",
            "username": "user",
            "password": "stored-password-1",
        }
        server = await _create(api, body)
        unsaved = {**body, **change, "server_id": server["id"]}
        del unsaved["password"]
        r = await api.post(f"{BASE}/test", json=unsaved, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert field_names(r) == ["password"]
        assert await listener.settled() == 0


async def test_unsaved_sendgrid_test_with_a_new_base_url_needs_the_key(
    client: httpx.AsyncClient,
) -> None:
    await new_tenant(client)
    server = await _create(client, SENDGRID)
    unsaved = {
        "engine": "sendgrid",
        "api_base_url": "https://attacker.example/v3",
        "server_id": server["id"],
    }
    r = await client.post(f"{BASE}/test", json=unsaved, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["api_key"]


async def test_imap_security_change_needs_the_password_again(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    imap = {"host": "imap.acme.example", "username": "ops", "password": "imap-secret-5"}
    body = {
        "address": "ops@acme.example",
        "display_name": "Ops",
        "mail_server_id": server["id"],
        "imap": imap,
    }
    r = await client.post("/api/v1/tenants/acme/email-accounts", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    url = f"/api/v1/tenants/acme/email-accounts/{r.json()['id']}"
    moved = {"host": "imap.acme.example", "username": "ops", "security": "starttls"}
    r = await client.patch(url, json={"imap": moved}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["imap.password"], r.text
    r = await client.patch(url, json={"imap": {**moved, "password": "p-2"}}, headers=ADMIN)
    assert r.status_code == 200, r.text
