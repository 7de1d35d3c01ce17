"""The Suppressions page in a real Chromium against a real Mailgate on loopback: the nav
link, adding an address, searching, and removing it after the confirmation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.browser import expect, launch
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, serving

OWNER = "owner@acme.test"
T = "/api/v1/tenants/acme"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            r = api.post(
                f"{T}/suppressions", json={"email": "old@example.org", "reason": "complaint"}
            )
            assert r.status_code == 201, r.text
        yield server


def test_add_search_and_remove_in_the_browser(live: LiveServer, tmp_path: Path) -> None:
    with launch() as browser:
        _walk(browser, live, tmp_path)


def _walk(browser: Any, live: LiveServer, tmp_path: Path) -> None:
    context = browser.new_context(base_url=live.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login")
    page.get_by_label("E-mail address").fill(OWNER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("link", name="Suppressions").click()
    expect(page.get_by_role("heading", name="Suppressions", level=1)).to_be_visible()
    expect(page.locator("tr[data-email='old@example.org']")).to_contain_text("complaint")

    page.get_by_label("Address").fill("gone@example.net")
    page.get_by_label("Reason").select_option("hard_bounce")
    page.get_by_label("Note").fill("bounced twice")
    page.get_by_role("button", name="Suppress").click()
    expect(page.get_by_text("gone@example.net suppressed.")).to_be_visible()
    row = page.locator("tr[data-email='gone@example.net']")
    expect(row).to_contain_text("hard bounce")
    expect(row).to_contain_text("all apps")
    page.screenshot(path=str(tmp_path / "suppressions.png"), full_page=True)

    page.get_by_label("Search").fill("gone")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tr[data-email='old@example.org']")).to_have_count(0)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove gone@example.net").click()
    expect(page.get_by_text("gone@example.net may be sent to again.")).to_be_visible()
    expect(page.locator("tr[data-email='gone@example.net']")).to_have_count(0)
    context.close()
    assert errors == [], errors
