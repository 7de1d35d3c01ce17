"""The account dialog's OAuth sign-in and Test inbox button; the Sending Domains panel."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.ui.conftest import add_tenant, add_user
from tests.ui.test_forms import SMTP

SECRET = "Canary-imap-oauth-5e2b"


async def _owner_with_server(browser_factory: Any, api: httpx.AsyncClient) -> tuple[Any, str]:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    await b.get("/t/acme/settings")
    assert (await b.post("/t/acme/settings/servers/new", SMTP)).status_code == 303
    servers = (await api.get("/api/v1/tenants/acme/mail-servers", headers=ADMIN)).json()
    return b, str(servers["items"][0]["id"])


async def test_the_dialog_saves_an_oauth_inbox_and_offers_its_test(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b, server_id = await _owner_with_server(browser_factory, api)
    new = await b.get("/t/acme/settings/accounts/new")
    assert 'name="imap.auth"' in new.text and "data-test-inbox" not in new.text
    form = {
        "address": "ops@acme.test",
        "display_name": "Ops",
        "mail_server_id": server_id,
        "imap.host": "outlook.office365.com",
        "imap.port": "993",
        "imap.security": "tls",
        "imap.username": "ops@acme.test",
        "imap.auth": "xoauth2",
        "imap.oauth.provider": "microsoft",
        "imap.oauth.tenant_id": "contoso.onmicrosoft.com",
        "imap.oauth.client_id": "app-1",
        "imap.oauth.client_secret": SECRET,
    }

    assert (await b.post("/t/acme/settings/accounts/new", form)).status_code == 303

    (saved,) = (await api.get("/api/v1/tenants/acme/email-accounts", headers=ADMIN)).json()["items"]
    assert saved["imap"]["auth"] == "xoauth2"
    assert saved["imap"]["oauth"]["client_secret_set"] is True
    edit = await b.get(f"/t/acme/settings/accounts/{saved['id']}/edit")
    assert SECRET not in edit.text
    assert f'data-test-inbox="/api/v1/tenants/acme/email-accounts/{saved["id"]}/test-inbox"' in (
        edit.text
    )
    assert 'value="contoso.onmicrosoft.com"' in edit.text
    missing = await b.post(
        f"/t/acme/settings/accounts/{saved['id']}/edit",
        {**form, "imap.oauth.tenant_id": ""},
    )
    assert missing.status_code == 422
    assert 'class="field invalid" data-field="imap.oauth.tenant_id"' in missing.text


async def test_the_settings_page_has_a_domain_check_per_sending_domain(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    b, server_id = await _owner_with_server(browser_factory, api)
    for address in ("a@acme.test", "b@Acme.test", "c@news.acme.test"):
        r = await api.post(
            "/api/v1/tenants/acme/email-accounts",
            json={"address": address, "display_name": "X", "mail_server_id": server_id},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text

    page = await b.get("/t/acme/settings")

    assert 'data-check-url="/api/v1/tenants/acme/domains"' in page.text
    assert page.text.count('data-domain-check="acme.test"') == 1
    assert 'data-domain-check="news.acme.test"' in page.text
