"""The Email Settings and Apps forms: services' rules as field errors, secrets never shown."""

from __future__ import annotations

import base64
import html as htmllib
import re
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.ui.conftest import add_tenant, add_user

CANARY = "Canary-UI-s3cret-9d1f"
SMTP = {
    "name": "Relay",
    "engine": "smtp",
    "host": "smtp.example.com",
    "port": "587",
    "security": "starttls",
    "min_tls_version": "1.2",
    "verify_certificate": "on",
    "auth": "password",
    "username": "mailer@example.com",
    "password": CANARY,
    "timeout_seconds": "30",
    "max_connections": "4",
}


async def _owner(browser_factory: Any, api: httpx.AsyncClient) -> Any:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    await b.get("/t/acme/settings")
    return b


def field_error(html: str, field: str) -> str:
    """The error text shown under input ``field``."""
    found = re.search(
        rf'data-field="{re.escape(field)}".*?<p class="field-error"[^>]*>([^<]*)</p>', html, re.S
    )
    assert found, f"no error shown for {field}"
    return htmllib.unescape(found.group(1))


async def _servers(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/tenants/acme/mail-servers", headers=ADMIN)
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_adding_a_server_in_the_form_saves_it_and_shows_its_card(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "stages": ["production"]})
    assert r.status_code == 303, r.text
    (server,) = await _servers(api)
    assert server["host"] == "smtp.example.com"
    assert server["password_set"] is True
    assert server["stages"] == ["production"]
    page = await b.get("/t/acme/settings")
    assert "Mail server Relay added." in page.text
    assert 'data-server="Relay"' in page.text
    # The server holds a stage: its Delete opens the dialog that lists what depends on it.
    confirm = await b.get(f"/t/acme/settings/servers/{server['id']}/delete")
    assert "Are you sure you want to delete Relay? This cannot be undone." in confirm.text
    assert "Stages: production" in confirm.text


async def test_service_rules_come_back_as_field_errors_with_the_typed_values(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "port": "25"})
    assert r.status_code == 422
    assert "port 25 is refused" in field_error(r.text, "port")
    assert 'value="smtp.example.com"' in r.text  # what was typed is kept ...
    assert CANARY not in r.text  # ... except the secret
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "host": "", "port": "x"})
    assert r.status_code == 422
    assert field_error(r.text, "port") == "must be a whole number"
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "host": ""})
    assert field_error(r.text, "host") == "is required for the smtp engine"
    assert 'aria-invalid="true" aria-describedby="f-host-error"' in r.text
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "security": "none"})
    assert "clear text" in field_error(r.text, "allow_insecure_auth")
    assert await _servers(api) == []


async def test_a_stage_held_by_another_server_is_a_conflict_naming_it(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    first = {**SMTP, "stages": ["production"]}
    assert (await b.post("/t/acme/settings/servers/new", first)).status_code == 303
    second = {**SMTP, "name": "Second", "stages": ["production"]}
    r = await b.post("/t/acme/settings/servers/new", second)
    assert r.status_code == 409
    assert "already uses mail server 'Relay'" in field_error(r.text, "stages")


async def test_editing_keeps_a_blank_secret_and_asks_for_it_when_the_host_changes(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    await b.post("/t/acme/settings/servers/new", SMTP)
    (server,) = await _servers(api)
    url = f"/t/acme/settings/servers/{server['id']}/edit"
    form = await b.get(url)
    assert "password set" in form.text
    assert CANARY not in form.text
    r = await b.post(url, {**SMTP, "password": "", "name": "Relay 2"})
    assert r.status_code == 303, r.text
    (server,) = await _servers(api)
    assert server["name"] == "Relay 2" and server["password_set"] is True
    r = await b.post(url, {**SMTP, "password": "", "host": "smtp.other.example"})
    assert r.status_code == 422
    assert "requires the password again" in field_error(r.text, "password")


async def test_deleting_a_server_asks_the_exact_question_first(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    await b.post("/t/acme/settings/servers/new", SMTP)
    (server,) = await _servers(api)
    url = f"/t/acme/settings/servers/{server['id']}/delete"
    confirm = await b.get(url)
    assert "Are you sure you want to delete Relay? This cannot be undone." in confirm.text
    assert await _servers(api) != []
    r = await b.post(url)
    assert r.status_code == 303
    assert await _servers(api) == []


async def test_accounts_need_a_server_and_keep_their_address(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    account = {"address": "support@acme.test", "display_name": "Support", "mail_server_id": ""}
    r = await b.post("/t/acme/settings/accounts/new", account)
    assert r.status_code == 422
    assert "no mail server yet" in field_error(r.text, "mail_server_id")
    await b.post("/t/acme/settings/servers/new", SMTP)
    (server,) = await _servers(api)
    bad = await b.post(
        "/t/acme/settings/accounts/new",
        {**account, "address": "not an address", "mail_server_id": server["id"]},
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "address")
    full = {
        **account,
        "mail_server_id": server["id"],
        "is_default": "on",
        "imap.host": "imap.acme.test",
        "imap.port": "993",
        "imap.security": "tls",
        "imap.username": "support@acme.test",
        "imap.password": CANARY,
    }
    assert (await b.post("/t/acme/settings/accounts/new", full)).status_code == 303
    items = (await api.get("/api/v1/tenants/acme/email-accounts", headers=ADMIN)).json()["items"]
    (saved,) = items
    assert saved["is_default"] is True and saved["imap"]["password_set"] is True
    edit = f"/t/acme/settings/accounts/{saved['id']}/edit"
    form = await b.get(edit)
    assert 'value="support@acme.test"' in form.text and "readonly" in form.text
    assert CANARY not in form.text
    r = await b.post(edit, {**full, "address": "other@acme.test", "imap.password": ""})
    assert r.status_code == 422
    assert "read-only after creation" in field_error(r.text, "address")
    page = await b.get("/t/acme/settings")
    assert (
        "Are you sure you want to delete the account Support? This cannot be undone." in page.text
    )
    assert 'data-sync-url="/api/v1/tenants/acme/email-accounts/' in page.text
    assert "Default" in page.text


async def test_an_account_description_is_saved_shown_and_checked(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    await b.post("/t/acme/settings/servers/new", SMTP)
    (server,) = await _servers(api)
    account = {
        "address": "support@acme.test",
        "display_name": "Support",
        "mail_server_id": server["id"],
        "description": "Replies to customer tickets",
    }
    assert (await b.post("/t/acme/settings/accounts/new", account)).status_code == 303
    (saved,) = (await api.get("/api/v1/tenants/acme/email-accounts", headers=ADMIN)).json()["items"]
    assert saved["description"] == "Replies to customer tickets"
    assert "Replies to customer tickets" in (await b.get("/t/acme/settings")).text
    edit = f"/t/acme/settings/accounts/{saved['id']}/edit"
    assert 'value="Replies to customer tickets"' in (await b.get(edit)).text
    r = await b.post(edit, {**account, "description": "x" * 201})
    assert r.status_code == 422 and field_error(r.text, "description")
    assert (await b.post(edit, {**account, "description": ""})).status_code == 303
    got = await api.get(f"/api/v1/tenants/acme/email-accounts/{saved['id']}", headers=ADMIN)
    assert got.json()["description"] == ""


async def test_test_lists_are_saved_and_bad_addresses_named(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    assert (await b.post("/t/acme/apps", {"name": "billing"})).status_code == 303
    url = "/t/acme/apps/billing/test-list"
    r = await b.post(url, {"addresses": "qa@acme.test\nnot-an-address", "active": "on"})
    assert r.status_code == 422
    assert field_error(r.text, "addresses")
    assert "not-an-address" in r.text
    r = await b.post(url, {"addresses": "qa@acme.test, dev@acme.test", "active": "on"})
    assert r.status_code == 303
    got = await api.get("/api/v1/tenants/acme/apps/billing/test-list", headers=ADMIN)
    assert got.json() == {
        "addresses": ["qa@acme.test", "dev@acme.test"],
        "users": [],
        "active": True,
    }


async def test_each_stage_tab_saves_its_own_list(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    assert (await b.post("/t/acme/apps", {"name": "billing"})).status_code == 303
    url = "/t/acme/apps/billing/test-list"
    form = {"stage": "test", "addresses": "qa@acme.test", "users": "nobody@acme.test"}
    r = await b.post(url, {**form, "active": "on"})
    assert r.status_code == 422
    assert field_error(r.text, "users") and "nobody@acme.test" in r.text
    r = await b.post(url, {**form, "users": "", "active": "on"})
    assert r.status_code == 303 and r.headers["location"].endswith("?stage=test")
    lists = "/api/v1/tenants/acme/apps/billing/stages/{}/test-list"
    got = await api.get(lists.format("test"), headers=ADMIN)
    assert got.json() == {"addresses": ["qa@acme.test"], "users": [], "active": True}
    for other in ("development", "production"):
        got = await api.get(lists.format(other), headers=ADMIN)
        assert got.json()["active"] is False
    page = await b.get("/t/acme/apps/billing?stage=test")
    # Every stage's panel is on the page; the tab asked for is the open one.
    assert re.search(r'<a [^>]*id="tab-stage-test"[^>]*aria-current="page"[^>]*>test', page.text)
    assert len(re.findall(r'aria-current="page"[^>]*data-selected', page.text)) == 1
    for panel in ("stage-development", "stage-test", "stage-production", "no-stage"):
        assert f'<section class="viewer tab-panel" id="{panel}"' in page.text
    assert '<textarea id="f-stage-test-addresses"' in page.text and "qa@acme.test" in page.text
    assert (await b.get("/t/acme/apps/billing?stage=nope")).status_code == 404


async def test_no_page_ever_shows_a_secret(browser_factory: Any, api: httpx.AsyncClient) -> None:
    b = await _owner(browser_factory, api)
    await b.post("/t/acme/settings/servers/new", SMTP)
    sendgrid = {"name": "Grid", "engine": "sendgrid", "api_key": CANARY}
    assert (await b.post("/t/acme/settings/servers/new", sendgrid)).status_code == 303
    graph = {
        "name": "Graph",
        "engine": "msgraph",
        "sender_upn": "mail@acme.test",
        "oauth.client_id": "client",
        "oauth.tenant_id": "tenant",
        "oauth.client_secret": CANARY,
        "oauth.grant": "client_credentials",
    }
    assert (await b.post("/t/acme/settings/servers/new", graph)).status_code == 303, "graph"
    servers = await _servers(api)
    await b.post(
        "/t/acme/settings/accounts/new",
        {
            "address": "support@acme.test",
            "display_name": "Support",
            "mail_server_id": servers[0]["id"],
            "imap.host": "imap.acme.test",
            "imap.password": CANARY,
        },
    )
    (account,) = (await api.get("/api/v1/tenants/acme/email-accounts", headers=ADMIN)).json()[
        "items"
    ]
    pages = ["/t/acme/settings", "/t/acme/audit", "/t/acme/logs", "/t/acme/apps", "/tenants"]
    pages += [f"/t/acme/settings/servers/{s['id']}/edit" for s in servers]
    pages += [f"/t/acme/settings/accounts/{account['id']}/edit"]
    forms = [base64.b64encode(CANARY.encode()).decode(), CANARY]
    for path in pages:
        r = await b.get(path)
        assert r.status_code in (200, 303), path
        for needle in forms:
            assert needle not in r.text, path
    edit = await b.get(f"/t/acme/settings/servers/{servers[1]['id']}/edit")
    assert "password set — leave blank to keep" in edit.text  # the API key is set


async def test_sendgrid_send_path_is_a_field_of_its_own(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b = await _owner(browser_factory, api)
    grid = {"name": "Grid", "engine": "sendgrid", "api_key": CANARY, "timeout_seconds": "30"}
    r = await b.post("/t/acme/settings/servers/new", {**grid, "send_path": "relay/mail"})
    assert r.status_code == 422
    assert "single /" in field_error(r.text, "send_path")
    assert 'value="relay/mail"' in r.text  # the typed value is kept
    r = await b.post("/t/acme/settings/servers/new", {**grid, "send_path": "/relay/v3/mail/send"})
    assert r.status_code == 303, r.text
    (server,) = await _servers(api)
    assert server["options"] == {"send_path": "/relay/v3/mail/send"}
    url = f"/t/acme/settings/servers/{server['id']}/edit"
    assert 'value="/relay/v3/mail/send"' in (await b.get(url)).text
    r = await b.post(url, {**grid, "api_key": "", "send_path": ""})
    assert r.status_code == 303, r.text
    (server,) = await _servers(api)
    assert server["options"] == {}
