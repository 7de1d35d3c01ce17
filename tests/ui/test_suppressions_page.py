"""The Suppressions page: list and search, add with field errors, remove, CSV import and
download, and what a viewer may do."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.ui.conftest import add_tenant, add_user


async def _signed_in(browser_factory: Any, api: httpx.AsyncClient, role: str) -> Any:
    await add_user(api, "acme", f"{role}@acme.test", role)
    b = browser_factory()
    await b.sign_in(f"{role}@acme.test")
    return b


async def test_owner_adds_searches_imports_downloads_and_removes(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    b = await _signed_in(browser_factory, api, "owner")
    r = await b.get("/t/acme/suppressions")
    assert r.status_code == 200
    assert "No suppressed address." in r.text
    assert 'href="/t/acme/suppressions" aria-current="page"' in r.text

    r = await b.post("/t/acme/suppressions", {"email": "not an address", "reason": "manual"})
    assert r.status_code == 422
    assert 'id="f-email-error"' in r.text and 'value="not an address"' in r.text

    r = await b.post(
        "/t/acme/suppressions",
        {"email": "Gone@Example.net", "reason": "hard_bounce", "note": "bounced in March"},
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert "gone@example.net suppressed." in r.text
    assert "hard bounce" in r.text and "bounced in March" in r.text

    csv_text = b"email,reason\r\nhappy@example.org,unsubscribe\r\nbroken\r\n"
    r = await b.post(
        "/t/acme/suppressions/import",
        files={"file": ("list.csv", csv_text, "text/csv")},
    )
    assert r.status_code == 422 and "line 3: email" in r.text
    r = await b.post(
        "/t/acme/suppressions/import",
        files={"file": ("list.csv", csv_text.replace(b"broken\r\n", b""), "text/csv")},
        follow_redirects=True,
    )
    assert "Imported: 1 added, 0 replaced." in r.text

    r = await b.get("/t/acme/suppressions?q=happy")
    assert "happy@example.org" in r.text and "gone@example.net" not in r.text

    download = await b.get("/api/v1/tenants/acme/suppressions/export")
    assert download.status_code == 200
    assert "gone@example.net,hard_bounce" in download.text

    r = await b.get("/t/acme/suppressions")
    [entry_id] = re.findall(r'/t/acme/suppressions/([0-9a-z]{26})/delete"', r.text)[:1]
    r = await b.post(f"/t/acme/suppressions/{entry_id}/delete", follow_redirects=True)
    assert "may be sent to again." in r.text
    listed = await api.get("/api/v1/tenants/acme/suppressions", headers=ADMIN)
    assert len(listed.json()["items"]) == 1


async def test_a_viewer_sees_the_list_but_no_forms_and_cannot_post(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    r = await api.post(
        "/api/v1/tenants/acme/suppressions", json={"email": "x@example.org"}, headers=ADMIN
    )
    entry_id = r.json()["id"]
    b = await _signed_in(browser_factory, api, "viewer")
    r = await b.get("/t/acme/suppressions")
    assert r.status_code == 200 and "x@example.org" in r.text
    assert "Add an address" not in r.text and "/delete" not in r.text
    r = await b.post("/t/acme/suppressions", {"email": "y@example.org"})
    assert r.status_code == 403
    r = await b.post(f"/t/acme/suppressions/{entry_id}/delete")
    assert r.status_code == 403
