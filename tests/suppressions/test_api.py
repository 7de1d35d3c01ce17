"""The suppression list API: search and paging, add, delete, CSV import and export, access."""

from __future__ import annotations

from tests.config.helpers import new_tenant, token_for
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant
from tests.suppressions.conftest import suppress

URL = f"{T}/suppressions"


async def test_add_search_page_get_and_delete(tenant: Tenant) -> None:
    c = tenant.client
    first = await suppress(tenant, "Gone@Example.NET", reason="hard_bounce", note="from DSN")
    assert first["email"] == "gone@example.net"
    assert (first["reason"], first["source"], first["app"], first["active"]) == (
        "hard_bounce",
        "api",
        None,
        True,
    )
    for n in range(4):
        await suppress(tenant, f"user{n}@example.org")
    await suppress(tenant, "only-billing@example.org", app="billing")

    r = await c.get(URL, params={"search": "EXAMPLE.org", "limit": 3}, headers=ADMIN)
    assert r.status_code == 200, r.text
    page1 = r.json()
    assert [i["email"] for i in page1["items"]] == [
        "only-billing@example.org",
        "user3@example.org",
        "user2@example.org",
    ]
    r = await c.get(
        URL,
        params={"search": "example.org", "limit": 3, "cursor": page1["next_cursor"]},
        headers=ADMIN,
    )
    page2 = r.json()
    assert [i["email"] for i in page2["items"]] == ["user1@example.org", "user0@example.org"]
    assert page2["next_cursor"] is None

    # "_" and "%" in a search are literal characters, not wildcards.
    r = await c.get(URL, params={"search": "user_"}, headers=ADMIN)
    assert r.json()["items"] == []
    r = await c.get(URL, params={"reason": "hard_bounce"}, headers=ADMIN)
    assert [i["email"] for i in r.json()["items"]] == ["gone@example.net"]
    r = await c.get(URL, params={"app": "billing"}, headers=ADMIN)
    assert [(i["email"], i["app"]) for i in r.json()["items"]] == [
        ("only-billing@example.org", "billing")
    ]

    r = await c.get(f"{URL}/{first['id']}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["note"] == "from DSN"
    r = await c.delete(f"{URL}/{first['id']}", headers=ADMIN)
    assert r.status_code == 204
    assert (await c.get(f"{URL}/{first['id']}", headers=ADMIN)).status_code == 404
    assert (await c.delete(f"{URL}/{first['id']}", headers=ADMIN)).status_code == 404


async def test_duplicates_conflict_per_scope_and_bad_input_names_the_field(tenant: Tenant) -> None:
    c = tenant.client
    held = await suppress(tenant, "a@example.org")
    r = await c.post(URL, json={"email": "A@example.org"}, headers=ADMIN)
    assert r.status_code == 409
    assert held["id"] in r.json()["errors"][0]["message"]
    # The same address for one app only is another scope.
    await suppress(tenant, "a@example.org", app="billing")

    for body, field in [
        ({"email": "not an address"}, "email"),
        ({"email": "a@b.example\r\nBcc: x@y.example"}, "email"),
        ({"email": "b@example.org", "reason": "spam"}, "reason"),
        ({"email": "b@example.org", "app": "nope"}, "app"),
        ({"email": "b@example.org", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"email": "b@example.org", "note": "two\nlines"}, "note"),
        ({"email": "b@example.org", "colour": "red"}, "colour"),
    ]:
        r = await c.post(URL, json=body, headers=ADMIN)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.text)


async def test_permissions_and_tenant_isolation(tenant: Tenant) -> None:
    c = tenant.client
    entry = await suppress(tenant, "a@example.org")
    viewer = await token_for(c, "acme", "viewer")
    assert (await c.get(URL, headers=viewer)).status_code == 200
    assert (await c.get(f"{URL}/export", headers=viewer)).status_code == 200
    assert (await c.post(URL, json={"email": "b@example.org"}, headers=viewer)).status_code == 403
    assert (await c.delete(f"{URL}/{entry['id']}", headers=viewer)).status_code == 403
    assert (await c.get(URL, headers=tenant.sender)).status_code == 403
    assert (await c.get(URL)).status_code == 401

    await new_tenant(c, "rival")
    rival = await token_for(c, "rival", "owner")
    assert (await c.get(URL, headers=rival)).status_code == 404
    r = await c.get(f"/api/v1/tenants/rival/suppressions/{entry['id']}", headers=rival)
    assert r.status_code == 404
    r = await c.delete(f"/api/v1/tenants/rival/suppressions/{entry['id']}", headers=rival)
    assert r.status_code == 404
    assert (await c.get(f"{URL}/{entry['id']}", headers=ADMIN)).status_code == 200


async def test_csv_import_and_export_round_trip(tenant: Tenant) -> None:
    c = tenant.client
    csv_text = (
        "email,reason,app,expires_at,note\r\n"
        "one@example.org,complaint,,,\r\n"
        "Two@Example.org,unsubscribe,billing,2099-01-01T00:00:00Z,list 7\r\n"
        "three@example.org,,,,=HYPERLINK()\r\n"
    )
    headers = {**ADMIN, "Content-Type": "text/csv"}
    r = await c.post(f"{URL}/import", content=csv_text.encode(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 3, "updated": 0}

    r = await c.get(f"{URL}/export", headers=ADMIN)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0] == "email,reason,app,created_at,expires_at,source_message_id,note"
    assert lines[1].startswith("one@example.org,complaint,,")
    assert lines[2].startswith("two@example.org,unsubscribe,billing,")
    assert "2099-01-01T00:00:00+00:00" in lines[2]
    assert lines[3].endswith(",'=HYPERLINK()")

    # The export imports again as it is: every row replaces itself.
    r = await c.post(f"{URL}/import", content=r.content, headers=headers)
    assert r.json() == {"created": 0, "updated": 3}
    r = await c.get(URL, params={"search": "three"}, headers=ADMIN)
    assert r.json()["items"][0]["note"] == "=HYPERLINK()"


async def test_a_bad_import_row_is_named_and_nothing_is_imported(tenant: Tenant) -> None:
    c = tenant.client
    headers = {**ADMIN, "Content-Type": "text/csv"}
    body = b"email,app\r\nok@example.org,\r\nbroken,\r\nfine@example.org,nope\r\n"
    r = await c.post(f"{URL}/import", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "line 3: email"
    body = b"email,app\r\nok@example.org,\r\nfine@example.org,nope\r\n"
    r = await c.post(f"{URL}/import", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "line 3: app"
    r = await c.post(f"{URL}/import", content=b"\xff\xfe", headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
    assert (await c.get(URL, headers=ADMIN)).json()["items"] == []
