"""Sign-in with tokens, the first owner, the Users and API tokens pages (routes, no browser)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.ui.conftest import PASSWORD, add_tenant, add_user

T = "/api/v1/tenants/acme"


async def _token(api: httpx.AsyncClient, role: str, app: str | None = None) -> str:
    body: dict[str, Any] = {"name": f"{role}-token", "role": role}
    if app:
        body["app"] = app
    r = await api.post(f"{T}/tokens", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def _token_sign_in(b: Any, token: str) -> httpx.Response:
    await b.get("/login")
    r: httpx.Response = await b.post("/login/admin", {"token": token})
    return r


async def test_without_users_the_token_sign_in_comes_first(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    b = browser_factory()
    first = (await b.get("/login")).text
    assert first.index('action="/login/admin"') < first.index('action="/login"')
    assert "No user has been created yet." in first
    await add_user(api, "acme", "owner@acme.test", "owner")
    later = (await b.get("/login")).text
    assert later.index('action="/login"') < later.index('action="/login/admin"')
    assert "No user has been created yet." not in later


async def test_an_owner_token_signs_in_to_its_tenant(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_tenant(api, "other")
    b = browser_factory()
    r = await _token_sign_in(b, await _token(api, "owner"))
    assert r.status_code == 303 and r.headers["location"] == "/t/acme/"
    assert (await b.get("/t/acme/settings")).status_code == 200
    assert (await b.get("/t/other/settings")).status_code == 404
    assert (await b.get("/tenants")).headers["location"] == "/t/acme/"


async def test_sender_and_app_tokens_do_not_open_the_ui(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await api.post(f"{T}/apps", json={"name": "billing"}, headers=ADMIN)
    for token in (await _token(api, "sender"), await _token(api, "owner", app="billing")):
        b = browser_factory()
        r = await _token_sign_in(b, token)
        assert r.status_code == 401
        assert "does not open the web UI" in r.text
    admin = browser_factory()
    assert (await _token_sign_in(admin, ADMIN_TOKEN)).headers["location"] == "/tenants"


async def test_create_the_first_owner_then_invite_change_role_and_remove(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    b = browser_factory()
    await _token_sign_in(b, ADMIN_TOKEN)
    empty = await b.get("/t/acme/users")
    assert "Create the first owner" in empty.text
    assert re.search(r'<option value="owner" selected>', empty.text)
    bad = await b.post(
        "/t/acme/users", {"email": "boss@acme.test", "password": "short", "role": "owner"}
    )
    assert bad.status_code == 422
    assert "at least 10 characters" in bad.text
    assert "What you typed here was not kept" in bad.text
    made = await b.post(
        "/t/acme/users", {"email": "boss@acme.test", "password": PASSWORD, "role": "owner"}
    )
    assert made.status_code == 303
    owner = browser_factory()
    assert (await owner.sign_in("boss@acme.test")).status_code == 303
    page = await owner.get("/t/acme/users")
    assert 'data-user="boss@acme.test"' in page.text and "Invite a user" in page.text
    await owner.post(
        "/t/acme/users", {"email": "dev@acme.test", "password": PASSWORD, "role": "viewer"}
    )
    users = (await api.get(f"{T}/users", headers=ADMIN)).json()["items"]
    dev = next(u for u in users if u["email"] == "dev@acme.test")
    r = await owner.post(f"/t/acme/users/{dev['id']}/role", {"role": "developer"})
    assert r.status_code == 303
    assert (await api.get(f"{T}/users/{dev['id']}", headers=ADMIN)).json()["role"] == "developer"
    assert (await owner.post(f"/t/acme/users/{dev['id']}/delete")).status_code == 303
    assert (await api.get(f"{T}/users/{dev['id']}", headers=ADMIN)).status_code == 404


async def test_a_token_is_shown_once_and_can_be_revoked(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    await b.get("/t/acme/tokens")
    r = await b.post("/t/acme/tokens", {"name": "billing-service", "role": "sender"})
    assert r.status_code == 200
    token = re.search(r'id="new-token" class="token" readonly value="([^"]+)"', r.text).group(1)
    assert "shown only this once" in r.text
    assert (
        await api.get(f"{T}/messages/stats", headers={"Authorization": f"Bearer {token}"})
    ).status_code in (200, 403)
    again = await b.get("/t/acme/tokens")
    assert token not in again.text and 'data-token="billing-service"' in again.text
    (listed,) = (await api.get(f"{T}/tokens", headers=ADMIN)).json()["items"]
    assert (await b.post(f"/t/acme/tokens/{listed['id']}/delete")).status_code == 303
    assert (await api.get(f"{T}/tokens", headers=ADMIN)).json()["items"] == []


async def test_a_viewer_sees_no_users_or_tokens_pages(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "viewer@acme.test", "viewer")
    b = browser_factory()
    await b.sign_in("viewer@acme.test")
    settings = await b.get("/t/acme/settings")
    assert "/t/acme/users" not in settings.text
    assert (await b.get("/t/acme/users")).status_code == 403
    assert (await b.get("/t/acme/tokens")).status_code == 403
