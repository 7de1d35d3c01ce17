"""Email accounts, apps and test lists, stages and tenants."""

from __future__ import annotations

import httpx
import pytest

from tests.config.helpers import create_server, field_names, new_tenant
from tests.conftest import ADMIN

ACCOUNTS = "/api/v1/tenants/acme/email-accounts"


async def _account(client: httpx.AsyncClient, server_id: str, **extra: object) -> httpx.Response:
    body = {"address": "ops@acme.example", "display_name": "Ops", "mail_server_id": server_id}
    body.update(extra)  # type: ignore[arg-type]
    return await client.post(ACCOUNTS, json=body, headers=ADMIN)


async def test_account_needs_a_mail_server_first(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(
        ACCOUNTS, json={"address": "a@acme.example", "display_name": "A"}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["mail_server_id"]
    assert "no mail server" in r.json()["detail"]


async def test_account_server_must_exist_and_be_given(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    await create_server(client, "acme")
    r = await client.post(
        ACCOUNTS, json={"address": "a@acme.example", "display_name": "A"}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["mail_server_id"]
    r = await _account(client, "no-such-server")
    assert r.status_code == 422 and field_names(r) == ["mail_server_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "not-an-address"}, "address"),
        ({"address": "a@b@c.example"}, "address"),
        ({"address": "ops@acme.example\r\nBcc: x@y.z"}, "address"),
        ({"display_name": "   "}, "display_name"),
        ({"reply_to": "nope"}, "reply_to"),
        ({"imap": {"port": 993}}, "imap.host"),
        ({"imap": {"host": "imap.x", "security": "none"}}, "imap.security"),
    ],
)
async def test_account_validation_names_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    r = await _account(client, server["id"], **body)
    assert r.status_code == 422, r.text
    assert field in field_names(r)


async def test_address_is_immutable(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    account = (await _account(client, server["id"])).json()
    r = await client.patch(
        f"{ACCOUNTS}/{account['id']}", json={"address": "other@acme.example"}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["address"]
    r = await client.patch(
        f"{ACCOUNTS}/{account['id']}", json={"display_name": "Operations"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["address"] == "ops@acme.example"


async def test_one_default_account(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    a = (await _account(client, server["id"], is_default=True)).json()
    b = (await _account(client, server["id"], address="b@acme.example", is_default=True)).json()
    items = {x["address"]: x for x in (await client.get(ACCOUNTS, headers=ADMIN)).json()["items"]}
    assert items["ops@acme.example"]["is_default"] is False
    assert items["b@acme.example"]["is_default"] is True
    await client.patch(f"{ACCOUNTS}/{a['id']}", json={"is_default": True}, headers=ADMIN)
    items = {x["address"]: x for x in (await client.get(ACCOUNTS, headers=ADMIN)).json()["items"]}
    assert items["ops@acme.example"]["is_default"] is True
    assert items["b@acme.example"]["is_default"] is False
    assert b["id"] != a["id"]


async def test_duplicate_address_is_conflict(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    assert (await _account(client, server["id"])).status_code == 201
    r = await _account(client, server["id"])
    assert r.status_code == 409 and field_names(r) == ["address"]


async def test_imap_password_write_only_and_kept(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    imap = {"host": "imap.acme.example", "username": "ops", "password": "imap-secret-5"}
    account = (await _account(client, server["id"], imap=imap)).json()
    assert account["imap"]["password_set"] is True and "password" not in account["imap"]
    assert account["imap"]["port"] == 993 and account["imap"]["folder"] == "INBOX"
    url = f"{ACCOUNTS}/{account['id']}"
    r = await client.patch(
        url, json={"imap": {**imap, "password": "", "folder": "Bounces"}}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["imap"]["password_set"] is True
    assert r.json()["imap"]["folder"] == "Bounces"
    # A stored password never follows the inbox to another server without being re-entered.
    for change in ({"host": "imap2.acme.example"}, {"username": "other"}, {"port": 1993}):
        moved = {"host": "imap.acme.example", "username": "ops", **change}
        r = await client.patch(url, json={"imap": moved}, headers=ADMIN)
        assert r.status_code == 422 and field_names(r) == ["imap.password"], r.text
    r = await client.patch(
        url,
        json={"imap": {"host": "imap2.acme.example", "username": "ops", "password": "new-6"}},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["imap"]["host"] == "imap2.acme.example"


async def test_apps_and_test_lists(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    base = "/api/v1/tenants/acme/apps"
    assert (await client.post(base, json={"name": "billing"}, headers=ADMIN)).status_code == 201
    r = await client.post(base, json={"name": "billing"}, headers=ADMIN)
    assert r.status_code == 409 and field_names(r) == ["name"]
    r = await client.put(
        f"{base}/billing/test-list",
        json={"addresses": ["qa@acme.example", "bad address"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 422 and field_names(r) == ["addresses[1]"]
    r = await client.put(
        f"{base}/billing/test-list", json={"addresses": [], "active": True}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["addresses"]
    r = await client.put(
        f"{base}/billing/test-list",
        json={"addresses": ["qa@acme.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200
    got = (await client.get(f"{base}/billing/test-list", headers=ADMIN)).json()
    assert got == {"addresses": ["qa@acme.example"], "users": [], "active": True}
    assert (await client.get(f"{base}/nope", headers=ADMIN)).status_code == 404


async def test_stages_seeded_added_and_protected(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    base = "/api/v1/tenants/acme/stages"
    names = [s["name"] for s in (await client.get(base, headers=ADMIN)).json()["items"]]
    assert names == ["development", "test", "production"]
    assert (await client.post(base, json={"name": "staging"}, headers=ADMIN)).status_code == 201
    r = await client.post(base, json={"name": "Bad Name!"}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["name"]
    r = await client.post(base, json={"name": "staging"}, headers=ADMIN)
    assert r.status_code == 409
    server = await create_server(client, "acme", name="Stage SMTP", stages=["staging"])
    r = await client.delete(f"{base}/staging", headers=ADMIN)
    assert r.status_code == 409 and "Stage SMTP" in r.json()["detail"]
    await client.patch(
        f"/api/v1/tenants/acme/mail-servers/{server['id']}", json={"stages": []}, headers=ADMIN
    )
    assert (await client.delete(f"{base}/staging", headers=ADMIN)).status_code == 204


async def test_tenants(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post("/api/v1/tenants", json={"slug": "acme", "name": "X"}, headers=ADMIN)
    assert r.status_code == 409 and field_names(r) == ["slug"]
    r = await client.post("/api/v1/tenants", json={"slug": "Bad Slug", "name": "X"}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["slug"]
    assert (await client.get("/api/v1/tenants")).status_code == 401
    r = await client.get("/api/v1/tenants", headers={"Authorization": "Bearer mg_wrong"})
    assert r.status_code == 401
    listed = (await client.get("/api/v1/tenants", headers=ADMIN)).json()["items"]
    assert [t["slug"] for t in listed] == ["acme"]
    r = await client.patch("/api/v1/tenants/acme", json={"name": "ACME Inc"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["name"] == "ACME Inc"
    assert (await client.delete("/api/v1/tenants/acme", headers=ADMIN)).status_code == 204
    assert (await client.get("/api/v1/tenants/acme", headers=ADMIN)).status_code == 404


async def test_tokens_shown_once_and_app_bound(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    await client.post("/api/v1/tenants/acme/apps", json={"name": "billing"}, headers=ADMIN)
    r = await client.post(
        "/api/v1/tenants/acme/tokens",
        json={"name": "ci", "role": "sender", "app": "billing"},
        headers=ADMIN,
    )
    assert r.status_code == 201
    token = r.json()["token"]
    assert r.json()["app"] == "billing"
    listed = (await client.get("/api/v1/tenants/acme/tokens", headers=ADMIN)).json()["items"]
    assert listed[0]["app"] == "billing" and "token" not in listed[0]
    assert token not in (await client.get("/api/v1/tenants/acme/tokens", headers=ADMIN)).text
    r = await client.post(
        "/api/v1/tenants/acme/tokens", json={"name": "x", "role": "god"}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["role"]
    r = await client.delete(f"/api/v1/tenants/acme/tokens/{listed[0]['id']}", headers=ADMIN)
    assert r.status_code == 204
    revoked = await client.get(
        "/api/v1/tenants/acme/stages", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 401


async def test_users_with_argon2_passwords(client: httpx.AsyncClient, ctx: object) -> None:
    from mailgate.services import auth
    from mailgate.services.context import Context

    assert isinstance(ctx, Context)
    await new_tenant(client)
    base = "/api/v1/tenants/acme/users"
    r = await client.post(
        base,
        json={"email": "Ann@Acme.example", "password": "short", "role": "admin"},
        headers=ADMIN,
    )
    assert r.status_code == 422 and field_names(r) == ["password"]
    r = await client.post(
        base,
        json={"email": "ann@acme.example", "password": "correct horse battery", "role": "admin"},
        headers=ADMIN,
    )
    assert r.status_code == 201 and "password" not in r.json()
    [user] = await auth.sign_in(ctx, "ann@acme.example", "correct horse battery")
    assert user.role.value == "admin" and user.email == "ann@acme.example"
    from mailgate.errors import Unauthenticated

    with pytest.raises(Unauthenticated):
        await auth.sign_in(ctx, "ann@acme.example", "wrong password!!")
    user_id = r.json()["id"]
    r = await client.patch(f"{base}/{user_id}", json={"role": "viewer"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["role"] == "viewer"


async def test_providers_resolve(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/api/v1/providers/resolve", params={"email": "a@gmail.com"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["host"] == "smtp.gmail.com"
    r = await client.get(
        "/api/v1/providers/resolve", params={"email": "a@unknown.example"}, headers=ADMIN
    )
    assert r.status_code == 404
    keys = {p["key"] for p in (await client.get("/api/v1/providers", headers=ADMIN)).json()}
    assert {"gmail", "sendgrid", "mailgun", "postmark"} <= keys
