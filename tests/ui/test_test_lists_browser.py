"""An app's test lists in a real Chromium: one tab per stage, each saving its own list, a
user of the tenant named on a list, and production left to its real recipients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN
from tests.ui.browser import expect, launch, signed_in
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, serving

OWNER = "owner@acme.test"
T = "/api/v1/tenants/acme"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            assert api.post(f"{T}/apps", json={"name": "billing"}).status_code == 201
        yield server


def test_stage_tabs_save_their_own_lists(live: LiveServer, tmp_path: Path) -> None:
    with launch() as browser, signed_in(browser, live.url, OWNER, PASSWORD) as page:
        page.goto("/t/acme/apps/billing")
        tabs = page.get_by_role("navigation", name="Stages")
        for name in ("development", "test", "production", "No stage"):
            expect(tabs.get_by_role("link", name=name)).to_be_visible()
        # The first stage's tab is open.
        expect(tabs.get_by_role("link", name="development")).to_have_attribute(
            "aria-current", "page"
        )

        tabs.get_by_role("link", name="test").click()
        expect(page.get_by_role("heading", name="Stage test")).to_be_visible()
        page.get_by_label("Addresses (one per line)").fill("qa@acme.test")
        page.get_by_label("Users (one e-mail address per line)").fill("nobody@acme.test")
        page.get_by_label("Active").check()
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".field-error")).to_contain_text("nobody@acme.test")

        page.get_by_label("Users (one e-mail address per line)").fill(OWNER)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Test list saved.")).to_be_visible()
        expect(tabs.get_by_role("link", name="test")).to_have_attribute("aria-current", "page")
        expect(tabs.get_by_role("link", name="test")).to_contain_text("Active")
        expect(page.get_by_label("Users (one e-mail address per line)")).to_have_value(OWNER)
        page.screenshot(path=str(tmp_path / "test-lists.png"), full_page=True)

        tabs.get_by_role("link", name="production").click()
        expect(page.get_by_role("heading", name="Stage production")).to_be_visible()
        expect(page.get_by_label("Addresses (one per line)")).to_have_value("")
        expect(page.get_by_label("Active")).not_to_be_checked()
        expect(tabs.get_by_role("link", name="production")).not_to_contain_text("Active")

        page.get_by_role("link", name="Apps", exact=True).first.click()
        expect(page.locator("tr", has_text="billing")).to_contain_text("test")

    with httpx.Client(base_url=live.url, headers=ADMIN, timeout=10) as api:
        test = api.get(f"{T}/apps/billing/stages/test/test-list").json()
        assert test["addresses"] == ["qa@acme.test"] and test["active"] is True
        assert [u["email"] for u in test["users"]] == [OWNER]
        assert api.get(f"{T}/apps/billing/stages/production/test-list").json()["active"] is False
