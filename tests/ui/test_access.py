"""Every UI route checks the tenant (404 across tenants) and its permission (403)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailgate.domain.roles import ROLE_PERMISSIONS, Permission, Role
from tests.conftest import ADMIN
from tests.ui.conftest import add_tenant, add_user

VIEW_CONFIG = Permission.VIEW_EMAIL_CONFIGURATIONS
MANAGE_CONFIG = Permission.MANAGE_EMAIL_CONFIGURATIONS

#: (method, path, permission): {server}, {account}, {message} are filled in per tenant.
ROUTES: list[tuple[str, str, Permission]] = [
    ("GET", "/t/acme/settings", VIEW_CONFIG),
    ("GET", "/t/acme/settings/servers/new", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/servers/new", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/servers/{server}/edit", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/servers/{server}/edit", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/servers/{server}/delete", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/servers/{server}/delete", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/servers/test", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/providers/resolve?email=a@gmail.com", VIEW_CONFIG),
    ("POST", "/t/acme/settings/stages", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/stages/test/delete", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/accounts/new", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/accounts/new", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/accounts/{account}/edit", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/accounts/{account}/edit", MANAGE_CONFIG),
    ("GET", "/t/acme/settings/accounts/{account}/delete", MANAGE_CONFIG),
    ("POST", "/t/acme/settings/accounts/{account}/delete", MANAGE_CONFIG),
    ("GET", "/t/acme/apps", VIEW_CONFIG),
    ("POST", "/t/acme/apps", Permission.MANAGE_APPS),
    ("GET", "/t/acme/apps/billing", VIEW_CONFIG),
    ("POST", "/t/acme/apps/billing/test-list", Permission.MANAGE_APPS),
    ("GET", "/t/acme/apps/billing/delete", Permission.MANAGE_APPS),
    ("POST", "/t/acme/apps/billing/delete", Permission.MANAGE_APPS),
    ("GET", "/t/acme/logs", Permission.VIEW_EMAIL_LOGS),
    ("GET", "/t/acme/logs/{message}", Permission.VIEW_EMAIL_LOGS),
    ("GET", "/t/acme/logs/{message}/raw", Permission.VIEW_EMAIL_LOGS),
    ("POST", "/t/acme/logs/{message}/retry", Permission.SEND_EMAIL),
    ("POST", "/t/acme/logs/{message}/cancel", Permission.SEND_EMAIL),
    ("GET", "/t/acme/captured", Permission.VIEW_EMAIL_LOGS),
    ("GET", "/t/acme/captured/{message}", Permission.VIEW_EMAIL_LOGS),
    ("GET", "/t/acme/captured/{message}/body.html", Permission.VIEW_EMAIL_LOGS),
    ("GET", "/t/acme/audit", VIEW_CONFIG),
]


async def _objects(api: httpx.AsyncClient) -> dict[str, str]:
    """A capture server, an account, an app and one message in ``acme``."""
    base = "/api/v1/tenants/acme"
    server = await api.post(
        f"{base}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    account = await api.post(
        f"{base}/email-accounts",
        json={
            "address": "noreply@acme.test",
            "display_name": "Acme",
            "mail_server_id": server.json()["id"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    await api.post(f"{base}/apps", json={"name": "billing"}, headers=ADMIN)
    sent = await api.post(
        f"{base}/messages",
        json={"to": ["a@example.com"], "subject": "Hi", "text": "Hello"},
        headers=ADMIN,
    )
    assert sent.status_code == 202, sent.text
    return {
        "server": server.json()["id"],
        "account": account.json()["id"],
        "message": sent.json()["id"],
    }


async def _status(browser: Any, method: str, path: str) -> int:
    if method == "GET":
        return int((await browser.get(path)).status_code)
    r = await browser.post(path, {"name": "x"}, headers={"Accept": "text/html"})
    return int(r.status_code)


@pytest.mark.parametrize("role", [r.value for r in Role])
async def test_each_role_reaches_exactly_the_routes_its_permissions_allow(
    browser_factory: Any, api: httpx.AsyncClient, role: str
) -> None:
    await add_tenant(api, "acme")
    ids = await _objects(api)
    await add_user(api, "acme", f"{role}@acme.test", role)
    b = browser_factory()
    assert (await b.sign_in(f"{role}@acme.test")).status_code == 303
    await b.get("/login")  # a page with this session's CSRF token
    granted = ROLE_PERMISSIONS[Role(role)]
    for method, template, permission in ROUTES:
        if method == "POST" and permission in granted:
            continue  # the allowed writes are exercised by the form tests
        path = template.format(**ids)
        status = await _status(b, method, path)
        if permission in granted:
            assert status in (200, 303), (role, method, path, status)
        else:
            assert status == 403, (role, method, path, status)


async def test_another_tenants_user_gets_404_on_every_route(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    ids = await _objects(api)
    await add_tenant(api, "globex")
    await add_user(api, "globex", "owner@globex.test", "owner")
    b = browser_factory()
    await b.sign_in("owner@globex.test")
    await b.get("/t/globex/settings")
    for method, template, _ in ROUTES:
        path = template.format(**ids)
        assert await _status(b, method, path) == 404, (method, path)
    home = await b.get("/t/acme/")
    assert home.status_code == 404
    # Nothing was changed in acme by those requests.
    servers = await api.get("/api/v1/tenants/acme/mail-servers", headers=ADMIN)
    assert [s["id"] for s in servers.json()["items"]] == [ids["server"]]


async def test_unknown_objects_in_the_own_tenant_are_404(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    for path in (
        "/t/acme/settings/servers/nope/edit",
        "/t/acme/settings/accounts/nope/edit",
        "/t/acme/apps/nope",
        "/t/acme/logs/nope",
        "/t/acme/captured/nope",
    ):
        r = await b.get(path)
        assert r.status_code == 404, path
        assert "<h1>Not found</h1>" in r.text


async def test_a_sender_has_no_page_but_is_told_so(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "sender@acme.test", "sender")
    b = browser_factory()
    await b.sign_in("sender@acme.test")
    r = await b.get("/t/acme/")
    assert r.status_code == 403
    assert "no page in the web UI" in r.text
