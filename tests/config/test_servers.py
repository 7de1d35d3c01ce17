"""Mail-server rules of API.md, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from mailgate.services.context import Context
from mailgate.storage.servers import ServerRepo
from mailgate.storage.tenants import get_tenant
from tests.config.helpers import create_server, field_names, new_tenant, smtp_server
from tests.conftest import ADMIN

BASE = "/api/v1/tenants/acme/mail-servers"


async def test_create_shows_secret_as_set_never_the_value(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme", password="very-secret-1")
    assert server["password_set"] is True
    assert "password" not in server
    assert "very-secret-1" not in httpx.Response(200, json=server).text
    got = (await client.get(f"{BASE}/{server['id']}", headers=ADMIN)).json()
    assert got["password_set"] is True and got["status"] == "unknown" and got["version"] == 1


async def test_defaults_follow_api_md(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json={"name": "Relay", "host": "relay.example.com"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["engine"], s["port"], s["security"], s["min_tls_version"]) == (
        "smtp",
        587,
        "starttls",
        "1.2",
    )
    assert s["verify_certificate"] is True and s["auth"] == "none"
    assert s["timeout_seconds"] == 30 and s["max_connections"] == 4
    assert s["stages"] == [] and s["is_default"] is False and s["options"] == {}


async def test_provider_fills_host_port_security(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(
        BASE,
        json={
            "name": "Gmail",
            "provider": "gmail",
            "auth": "password",
            "username": "a@gmail.com",
            "password": "app-password-123",
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["host"], r.json()["port"], r.json()["security"]) == (
        "smtp.gmail.com",
        587,
        "starttls",
    )


async def test_unknown_provider_names_field(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json={"name": "X", "provider": "nope"}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["provider"]


async def test_port_25_refused_with_reason(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(port=25), headers=ADMIN)
    assert r.status_code == 422
    assert field_names(r) == ["port"]
    assert "MAILGATE_ALLOW_PORT_25" in r.json()["errors"][0]["message"]
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"security": "ssl"}, "security"),
        ({"engine": "pigeon"}, "engine"),
        ({"min_tls_version": "1.0"}, "min_tls_version"),
        ({"host": None}, "host"),
        ({"username": None}, "username"),
        ({"password": None}, "password"),
        ({"max_connections": 0}, "max_connections"),
        ({"unexpected": 1}, "unexpected"),
        ({"auth": "xoauth2", "oauth": {"provider": "yahoo"}}, "oauth.provider"),
    ],
)
async def test_invalid_fields_are_named(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(**body), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in field_names(r)


async def test_password_auth_without_tls_needs_explicit_opt_in(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(security="none", port=2525), headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["allow_insecure_auth"]
    r = await client.post(
        BASE,
        json=smtp_server(security="none", port=2525, allow_insecure_auth=True),
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text


async def test_name_unique_in_tenant(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    await create_server(client, "acme", name="Same")
    r = await client.post(BASE, json=smtp_server(name="Same"), headers=ADMIN)
    assert r.status_code == 409 and field_names(r) == ["name"]


async def test_one_server_per_stage_conflict_names_stage_and_server(
    client: httpx.AsyncClient,
) -> None:
    await new_tenant(client)
    first = await create_server(client, "acme", name="Prod SMTP", stages=["production"])
    assert first["stages"] == ["production"]
    r = await client.post(
        BASE, json=smtp_server(name="Other", stages=["test", "production"]), headers=ADMIN
    )
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "production" in detail and "Prod SMTP" in detail
    assert field_names(r) == ["stages[1]"]
    # Nothing of the refused request was saved.
    names = [s["name"] for s in (await client.get(BASE, headers=ADMIN)).json()["items"]]
    assert names == ["Prod SMTP"]
    # A server may hold several stages, and re-saving its own stage is not a conflict.
    r = await client.patch(
        f"{BASE}/{first['id']}", json={"stages": ["production", "test"]}, headers=ADMIN
    )
    assert r.status_code == 200 and sorted(r.json()["stages"]) == ["production", "test"]


async def test_unknown_stage_is_422(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(stages=["staging"]), headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["stages[0]"]


async def test_setting_default_clears_previous(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    a = await create_server(client, "acme", name="A", is_default=True)
    b = await create_server(client, "acme", name="B", is_default=True)
    servers = {s["name"]: s for s in (await client.get(BASE, headers=ADMIN)).json()["items"]}
    assert servers["A"]["is_default"] is False and servers["B"]["is_default"] is True
    r = await client.patch(f"{BASE}/{a['id']}", json={"is_default": True}, headers=ADMIN)
    assert r.status_code == 200
    servers = {s["name"]: s for s in (await client.get(BASE, headers=ADMIN)).json()["items"]}
    assert servers["A"]["is_default"] is True and servers["B"]["is_default"] is False
    assert b["id"] != a["id"]


async def test_blank_or_omitted_secret_keeps_stored_one(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    await new_tenant(client)
    s = await create_server(client, "acme", password="first-secret-9")
    r = await client.patch(
        f"{BASE}/{s['id']}", json={"password": "", "timeout_seconds": 10}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["password_set"] is True
    r = await client.patch(f"{BASE}/{s['id']}", json={"name": "Renamed"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 3
    async with ctx.db.read() as tx:
        tenant_id = (await get_tenant(tx, "acme")).id
        stored = await ServerRepo(tx, ctx.box, tenant_id).secrets(s["id"])
    assert stored == {"password": "first-secret-9"}


@pytest.mark.parametrize(
    "change",
    [{"host": "other.example.com"}, {"port": 465}, {"username": "x@y.z"}, {"security": "tls"}],
)
async def test_changing_connection_fields_requires_secret_again(
    client: httpx.AsyncClient, change: dict[str, object]
) -> None:
    await new_tenant(client)
    s = await create_server(client, "acme")
    r = await client.patch(f"{BASE}/{s['id']}", json=change, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["password"]
    r = await client.patch(
        f"{BASE}/{s['id']}", json={**change, "password": "new-secret-77"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    key, value = next(iter(change.items()))
    assert r.json()[key] == value


async def test_delete_server_leaves_accounts_without_server(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    s = await create_server(client, "acme", stages=["test"])
    r = await client.post(
        "/api/v1/tenants/acme/email-accounts",
        json={"address": "ops@acme.example", "display_name": "Ops", "mail_server_id": s["id"]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    account = r.json()
    r = await client.delete(f"{BASE}/{s['id']}", headers=ADMIN)
    assert r.status_code == 409 and r.json()["dependants"]["accounts"] == ["ops@acme.example"]
    r = await client.delete(f"{BASE}/{s['id']}?stages_to=none&accounts_to=none", headers=ADMIN)
    assert r.status_code == 204
    got = await client.get(f"/api/v1/tenants/acme/email-accounts/{account['id']}", headers=ADMIN)
    assert got.status_code == 200 and got.json()["mail_server_id"] is None
    stages = (await client.get("/api/v1/tenants/acme/stages", headers=ADMIN)).json()["items"]
    assert all(st["mail_server_id"] is None for st in stages)
    assert (await client.get(f"{BASE}/{s['id']}", headers=ADMIN)).status_code == 404


async def test_fallback_must_be_another_server_of_the_tenant(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    a = await create_server(client, "acme", name="A")
    r = await client.patch(f"{BASE}/{a['id']}", json={"fallback_server_id": a["id"]}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["fallback_server_id"]
    r = await client.post(
        BASE, json=smtp_server(name="B", fallback_server_id="nope"), headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["fallback_server_id"]
    r = await client.post(
        BASE, json=smtp_server(name="B", fallback_server_id=a["id"]), headers=ADMIN
    )
    assert r.status_code == 201 and r.json()["fallback_server_id"] == a["id"]


async def test_http_engines_require_their_credentials(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json={"name": "SG", "engine": "sendgrid"}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["api_key"]
    r = await client.post(
        BASE, json={"name": "SG", "engine": "sendgrid", "api_key": "SG.key-123"}, headers=ADMIN
    )
    assert r.status_code == 201 and r.json()["api_key_set"] is True
    r = await client.post(BASE, json={"name": "Graph", "engine": "msgraph"}, headers=ADMIN)
    assert r.status_code == 422
    assert set(field_names(r)) == {"sender_upn", "oauth.client_id", "oauth.tenant_id"}
    r = await client.post(
        BASE,
        json={
            "name": "Graph",
            "engine": "msgraph",
            "sender_upn": "mailer@acme.example",
            "oauth": {
                "provider": "microsoft",
                "client_id": "cid",
                "tenant_id": "tid",
                "client_secret": "graph-secret-1",
            },
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    oauth = r.json()["oauth"]
    assert oauth["client_secret_set"] is True and "client_secret" not in oauth


async def test_pagination(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    for i in range(5):
        await create_server(client, "acme", name=f"S{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(BASE, params=params, headers=ADMIN)).json()
        seen += [s["name"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"S{i}" for i in range(5)]
