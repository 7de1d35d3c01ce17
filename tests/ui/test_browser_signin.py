"""Sign-in of a new instance in a real Chromium, keyboard only: the token first, the first
owner, then e-mail and password; the tenant picker for a user in several tenants."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, serving
from tests.ui.test_browser import chromium, expect  # noqa: F401


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An instance with two tenants and no user at all."""
    with serving(tmp_path_factory.mktemp("fresh"), tenants=("acme", "globex")) as server:
        yield server


@pytest.fixture
def tab(chromium: Any, fresh: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(base_url=fresh.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors


def test_a_new_instance_token_first_then_the_first_owner_by_keyboard(
    tab: Any, fresh: LiveServer
) -> None:
    tab.goto("/login")
    expect(tab.get_by_text("No user has been created yet.")).to_be_visible()
    token = tab.get_by_label("API token")
    expect(token).to_be_visible()  # not hidden in a closed section
    token.focus()
    tab.keyboard.type(ADMIN_TOKEN)
    tab.keyboard.press("Enter")
    expect(tab.get_by_role("heading", name="Choose a tenant")).to_be_visible()
    tab.get_by_role("link", name="Acme").focus()
    tab.keyboard.press("Enter")
    tab.get_by_role("link", name="Users").focus()
    tab.keyboard.press("Enter")
    expect(tab.get_by_role("heading", name="Create the first owner")).to_be_visible()
    expect(tab.get_by_label("Role")).to_have_value("owner")
    tab.get_by_label("E-mail address").focus()
    tab.keyboard.type("boss@acme.test")
    tab.keyboard.press("Tab")
    tab.keyboard.type(PASSWORD)
    tab.keyboard.press("Enter")
    expect(tab.locator(".flash")).to_contain_text("boss@acme.test can now sign in as owner.")
    expect(tab.locator('[data-user="boss@acme.test"]')).to_be_visible()

    with fresh.admin_api() as api:
        r = api.post(
            "/api/v1/tenants/globex/users",
            json={"email": "boss@acme.test", "password": PASSWORD, "role": "viewer"},
        )
        assert r.status_code == 201, r.text
    tab.get_by_role("button", name="Sign out").click()
    expect(tab.get_by_label("E-mail address")).to_be_visible()  # users exist: e-mail first
    tab.get_by_label("E-mail address").fill("boss@acme.test")
    tab.get_by_label("Password", exact=True).fill(PASSWORD)
    tab.get_by_label("Password", exact=True).press("Enter")
    picker = tab.get_by_role("list", name="Tenants")
    expect(picker).to_contain_text("owner")
    expect(picker).to_contain_text("viewer")
    tab.get_by_role("link", name="Globex").click()
    expect(tab.get_by_role("heading", name="Email Settings", level=1)).to_be_visible()
    expect(tab.get_by_role("link", name="Users")).to_have_count(0)  # a viewer there


def test_a_tenant_owner_token_opens_its_tenant(tab: Any, fresh: LiveServer) -> None:
    with fresh.admin_api() as api:
        r = api.post("/api/v1/tenants/globex/tokens", json={"name": "demo", "role": "owner"})
        owner_token = r.json()["token"]
    tab.goto("/login")
    if not tab.get_by_label("API token").is_visible():  # users exist: behind e-mail sign-in
        tab.get_by_text("Sign in with a token").click()
    tab.get_by_label("API token").fill(owner_token)
    tab.get_by_role("button", name="Sign in with the token").click()
    expect(tab.get_by_role("heading", name="Email Settings", level=1)).to_be_visible()
    assert "/t/globex/" in tab.url
