"""Sign-in, sessions, CSRF and sign-in throttling of the web UI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.ui.conftest import PASSWORD, add_tenant, add_user


async def _owner(api: httpx.AsyncClient) -> None:
    await add_tenant(api, "acme")
    await add_user(api, "acme", "owner@acme.test", "owner")


async def test_pages_redirect_to_sign_in_with_the_page_to_return_to(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    for path in ("/t/acme/settings", "/t/acme/logs", "/t/acme/captured", "/tenants", "/t/acme/"):
        r = await b.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login"), path
    r = await b.get("/t/acme/logs?status=sent")
    assert r.headers["location"] == "/login?next=%2Ft%2Facme%2Flogs%3Fstatus%3Dsent"


async def test_sign_in_sets_a_hardened_cookie_and_lands_on_the_tenant(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    r = await b.sign_in("owner@acme.test")
    assert r.status_code == 303
    assert r.headers["location"] == "/t/acme/"
    cookie = r.headers["set-cookie"]
    assert "mailgate_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert PASSWORD not in cookie and "owner@acme.test" not in cookie  # sealed, not readable
    r = await b.get("/t/acme/")
    assert r.headers["location"] == "/t/acme/settings"
    r = await b.get("/t/acme/settings")
    assert r.status_code == 200
    assert "<h1>Email Settings</h1>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.get("/login?next=/t/acme/logs")
    r = await b.post(
        "/login", {"email": "owner@acme.test", "password": PASSWORD, "next": "/t/acme/logs"}
    )
    assert r.headers["location"] == "/t/acme/logs"
    b2 = browser_factory()
    await b2.get("/login")
    r = await b2.post(
        "/login", {"email": "owner@acme.test", "password": PASSWORD, "next": "//evil.test/x"}
    )
    assert r.headers["location"] == "/t/acme/"


async def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    wrong = await b.sign_in("owner@acme.test", "not the password")
    unknown = await b.sign_in("nobody@acme.test")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "Wrong e-mail address or password." in r.text
    assert (await b.get("/t/acme/settings")).status_code == 303


async def test_failed_sign_ins_lock_the_address_out_even_for_the_right_password(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    for _ in range(5):
        assert (await b.sign_in("owner@acme.test", "guess")).status_code == 401
    r = await b.sign_in("owner@acme.test")
    assert r.status_code == 429
    assert "Too many failed sign-ins" in r.text
    # Another address is not locked by these failures.
    await add_user(api, "acme", "viewer@acme.test", "viewer")
    assert (await b.sign_in("viewer@acme.test")).status_code == 303


async def test_spaces_around_the_address_do_not_escape_the_lockout(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    for n in range(5):
        r = await b.sign_in(" " * n + "owner@acme.test" + " " * (n + 1), "guess")
        assert r.status_code == 401
    assert (await b.sign_in("owner@acme.test")).status_code == 429


async def test_concurrent_sign_ins_cannot_all_pass_the_check_before_failures_count(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.get("/login")
    attempts = [
        b.post("/login", {"email": "owner@acme.test", "password": f"guess {n}"}) for n in range(20)
    ]
    statuses = sorted(r.status_code for r in await asyncio.gather(*attempts))
    assert statuses == [401] * 5 + [429] * 15


async def test_sign_in_without_the_form_token_is_refused(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.get("/login")
    r = await b.client.post("/login", data={"email": "owner@acme.test", "password": PASSWORD})
    assert r.status_code == 403
    fresh = browser_factory()  # no cookie at all: the token cannot match
    r = await fresh.client.post(
        "/login", data={"email": "owner@acme.test", "password": PASSWORD, "csrf_token": "x"}
    )
    assert r.status_code == 403


async def test_posts_without_the_sessions_csrf_token_or_from_elsewhere_are_refused(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    await b.get("/t/acme/apps")
    form = {"name": "billing"}
    missing = await b.client.post("/t/acme/apps", data=form)
    wrong = await b.client.post("/t/acme/apps", data={**form, "csrf_token": "forged"})
    other_site = await b.post("/t/acme/apps", form, headers={"Origin": "https://evil.test"})
    for r in (missing, wrong, other_site):
        assert r.status_code == 403
        assert "did not come from this site" in r.text
    header = await b.client.post(
        "/t/acme/settings/servers/test",
        data={"engine": "capture"},
        headers={"X-CSRF-Token": "forged", "Accept": "application/json"},
    )
    assert header.status_code == 403
    assert header.json()["status"] == 403
    r = await b.get("/t/acme/apps")
    assert "billing" not in r.text
    ok = await b.post("/t/acme/apps", form, headers={"Origin": "http://mailgate.test"})
    assert ok.status_code == 303
    assert "billing" in (await b.get("/t/acme/apps")).text


async def test_a_tampered_cookie_is_no_session(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    value = b.client.cookies["mailgate_session"]
    b.client.cookies.set(
        "mailgate_session", value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    )
    r = await b.get("/t/acme/settings")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


async def test_sign_out_ends_the_session(browser_factory: Any, api: httpx.AsyncClient) -> None:
    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    await b.get("/t/acme/settings")
    r = await b.post("/logout")
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert (await b.get("/t/acme/settings")).status_code == 303
    assert "You are signed out." in (await b.get("/login")).text


async def test_a_deleted_user_or_a_changed_password_ends_the_session(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    from tests.conftest import ADMIN

    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    assert (await b.get("/t/acme/settings")).status_code == 200
    users = (await api.get("/api/v1/tenants/acme/users", headers=ADMIN)).json()["items"]
    user_id = users[0]["id"]
    r = await api.patch(
        f"/api/v1/tenants/acme/users/{user_id}", json={"password": "a new one!"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert (await b.get("/t/acme/settings")).status_code == 303
    await b.sign_in("owner@acme.test", "a new one!")
    assert (await b.get("/t/acme/settings")).status_code == 200
    await api.delete(f"/api/v1/tenants/acme/users/{user_id}", headers=ADMIN)
    assert (await b.get("/t/acme/settings")).status_code == 303


async def test_instance_admin_signs_in_with_the_token_and_picks_a_tenant(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_tenant(api, "globex")
    b = browser_factory()
    await b.get("/login")
    bad = await b.post("/login/admin", {"token": "mg_not_a_token"})
    assert bad.status_code == 401
    r = await b.post("/login/admin", {"token": ADMIN_TOKEN})
    assert r.headers["location"] == "/tenants"
    picker = await b.get("/tenants")
    assert picker.status_code == 200
    assert 'href="/t/acme/"' in picker.text and 'href="/t/globex/"' in picker.text
    assert ADMIN_TOKEN not in picker.text
    assert (await b.get("/t/globex/settings")).status_code == 200


async def test_a_user_of_one_tenant_skips_the_picker(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    r = await b.get("/tenants")
    assert r.status_code == 303
    assert r.headers["location"] == "/t/acme/"


async def test_one_address_in_two_tenants_opens_the_tenants_its_password_belongs_to(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    await add_tenant(api, "globex")
    await add_tenant(api, "initech")
    await add_user(api, "acme", "pat@example.test", "owner")
    await add_user(api, "globex", "pat@example.test", "viewer")
    r = await api.post(
        "/api/v1/tenants/initech/users",
        json={"email": "pat@example.test", "password": "initech only pw", "role": "owner"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text

    shared = browser_factory()
    r = await shared.sign_in("pat@example.test")
    assert r.status_code == 303 and r.headers["location"] == "/tenants"
    picker = await shared.get("/tenants")
    assert "/t/acme/" in picker.text and "/t/globex/" in picker.text
    assert "/t/initech/" not in picker.text
    assert (await shared.get("/t/initech/settings")).status_code == 404

    only = browser_factory()
    r = await only.sign_in("pat@example.test", "initech only pw")
    assert r.status_code == 303 and r.headers["location"] == "/t/initech/"
    assert (await only.get("/t/acme/settings")).status_code == 404

    wrong = browser_factory()
    r = await wrong.sign_in("pat@example.test", "nobody's password")
    assert r.status_code == 401


async def test_wrong_admin_tokens_from_one_address_never_lock_out_another_address(
    ui_app: Any,
) -> None:
    from tests.ui.conftest import Browser

    def browser_at(host: str) -> Browser:
        transport = httpx.ASGITransport(app=ui_app, client=(host, 40000))
        return Browser(httpx.AsyncClient(transport=transport, base_url="http://mailgate.test"))

    attacker, admin = browser_at("203.0.113.9"), browser_at("198.51.100.7")
    try:
        await attacker.get("/login")
        for n in range(8):
            r = await attacker.post("/login/admin", {"token": f"mg_guess_{n}"})
            assert r.status_code == (401 if n < 5 else 429)
        # The attacker's address is throttled, even with the right token...
        assert (await attacker.post("/login/admin", {"token": ADMIN_TOKEN})).status_code == 429
        # ...but the real administrator, elsewhere, signs in at once.
        await admin.get("/login")
        r = await admin.post("/login/admin", {"token": ADMIN_TOKEN})
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/tenants"
    finally:
        await attacker.client.aclose()
        await admin.client.aclose()


async def test_sign_out_ends_the_session_for_a_copied_cookie_too(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    assert (await b.get("/t/acme/settings")).status_code == 200
    copied = b.client.cookies["mailgate_session"]
    thief = browser_factory()
    thief.client.cookies.set("mailgate_session", copied, domain="mailgate.test")
    assert (await thief.get("/t/acme/settings")).status_code == 200
    assert (await thief.client.get("/api/v1/tenants/acme/mail-servers")).status_code == 200
    assert (await b.post("/logout")).status_code == 303
    # The copy, replayed after sign-out, opens nothing: pages, the picker, the API.
    assert (await thief.get("/t/acme/settings")).status_code == 303
    assert (await thief.get("/tenants")).status_code == 303
    assert (await thief.client.get("/api/v1/tenants/acme/mail-servers")).status_code == 401


async def test_admin_sign_out_ends_the_session_for_a_copied_cookie_too(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    await add_tenant(api, "acme")
    b = browser_factory()
    await b.get("/login")
    assert (await b.post("/login/admin", {"token": ADMIN_TOKEN})).status_code == 303
    copied = b.client.cookies["mailgate_session"]
    assert (await b.get("/tenants")).status_code == 200  # the page's form token
    assert (await b.post("/logout")).status_code == 303
    thief = browser_factory()
    thief.client.cookies.set("mailgate_session", copied, domain="mailgate.test")
    assert (await thief.get("/tenants")).status_code == 303
    assert (await thief.get("/t/acme/settings")).status_code == 303


async def test_a_changed_role_ends_the_session(
    browser_factory: Any, api: httpx.AsyncClient
) -> None:
    from tests.conftest import ADMIN

    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    assert (await b.get("/t/acme/settings")).status_code == 200
    users = (await api.get("/api/v1/tenants/acme/users", headers=ADMIN)).json()["items"]
    r = await api.patch(
        f"/api/v1/tenants/acme/users/{users[0]['id']}", json={"role": "admin"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert (await b.get("/t/acme/settings")).status_code == 303
    assert (await b.client.get("/api/v1/tenants/acme/mail-servers")).status_code == 401


async def test_a_changed_password_deletes_the_server_side_session(
    browser_factory: Any, api: httpx.AsyncClient, ui_app: Any
) -> None:
    from mailgate.services import ui_sessions
    from tests.conftest import ADMIN

    await _owner(api)
    b = browser_factory()
    await b.sign_in("owner@acme.test")
    assert (await b.get("/t/acme/settings")).status_code == 200
    ui = ui_app.state.mailgate_ui
    session = ui.codec.open(b.client.cookies["mailgate_session"])
    assert await ui_sessions.session_active(ui.ctx, session.session_id)
    users = (await api.get("/api/v1/tenants/acme/users", headers=ADMIN)).json()["items"]
    r = await api.patch(
        f"/api/v1/tenants/acme/users/{users[0]['id']}",
        json={"password": "a new one, longer"},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert (await b.get("/t/acme/settings")).status_code == 303
    assert not await ui_sessions.session_active(ui.ctx, session.session_id)
