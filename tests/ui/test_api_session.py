"""The UI's own scripts call the REST API with the session cookie; writes need its CSRF token."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ADMIN
from tests.ui.conftest import Browser, add_tenant, add_user

pytestmark = pytest.mark.asyncio

SERVERS = "/api/v1/tenants/acme/mail-servers"
SERVER = {
    "name": "relay",
    "engine": "capture",
    "stages": [],
}


async def _signed_in(api: httpx.AsyncClient, browser_factory: Callable[[], Browser]) -> Browser:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")
    b = browser_factory()
    r = await b.sign_in("owner@acme.test")
    assert r.status_code in (302, 303), r.text
    await b.get("/t/acme/settings")
    assert b.csrf
    return b


async def test_a_signed_in_page_reads_the_api_with_its_cookie(
    api: httpx.AsyncClient, browser_factory: Callable[[], Browser]
) -> None:
    b = await _signed_in(api, browser_factory)
    assert (await b.client.get(SERVERS)).status_code == 200
    anonymous = browser_factory()
    assert (await anonymous.client.get(SERVERS)).status_code == 401


async def test_api_writes_need_the_csrf_token_and_the_same_origin(
    api: httpx.AsyncClient, browser_factory: Callable[[], Browser]
) -> None:
    b = await _signed_in(api, browser_factory)
    assert (await b.client.post(SERVERS, json=SERVER)).status_code == 401
    forged = await b.client.post(SERVERS, json=SERVER, headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 401
    elsewhere = await b.client.post(
        SERVERS, json=SERVER, headers={"X-CSRF-Token": b.csrf, "Origin": "https://evil.test"}
    )
    assert elsewhere.status_code == 401
    made = await b.client.post(SERVERS, json=SERVER, headers={"X-CSRF-Token": b.csrf})
    assert made.status_code == 201, made.text
    listed = await api.get(SERVERS, headers=ADMIN)
    assert [s["name"] for s in listed.json()["items"]] == ["relay"]


async def test_the_session_gives_no_access_to_another_tenant(
    api: httpx.AsyncClient, browser_factory: Callable[[], Browser]
) -> None:
    b = await _signed_in(api, browser_factory)
    await add_tenant(api, "other")
    r = await b.client.get("/api/v1/tenants/other/mail-servers")
    assert r.status_code == 404
