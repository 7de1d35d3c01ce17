"""An app's test lists in a real Chromium: one WAI-ARIA tab per stage (keyboard, roving
tabindex, the choice kept in the address), each saving its own list, a user of the tenant
named on a list, production left to its real recipients, and every panel shown without
JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN
from tests.ui.browser import expect, launch, signed_in
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, serving

OWNER = "owner@acme.test"
T = "/api/v1/tenants/acme"
TABS = ["development", "test", "production", "No stage"]
PANELS = ["stage-development", "stage-test", "stage-production", "no-stage"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            assert api.post(f"{T}/apps", json={"name": "billing"}).status_code == 201
        yield server


def _selected(page: Any) -> list[str]:
    """Each tab as "name selected tabindex controls hidden-panel" (one string per tab)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[role=tablist] [role=tab]')].map((t) => {
             const panel = document.getElementById(t.getAttribute('aria-controls'));
             return [t.dataset.key || '-', t.getAttribute('aria-selected'), t.tabIndex,
                     panel.getAttribute('role'), panel.getAttribute('aria-labelledby') === t.id,
                     panel.hidden].join(' ');
           })"""
    )


def test_stage_tabs_follow_the_tabs_pattern(live: LiveServer) -> None:
    with launch() as browser, signed_in(browser, live.url, OWNER, PASSWORD) as page:
        page.goto("/t/acme/apps/billing")
        tablist = page.get_by_role("tablist", name="Stages")
        tabs = tablist.get_by_role("tab")
        expect(tabs).to_have_count(4)
        for name in TABS:
            expect(tablist.get_by_role("tab", name=name)).to_be_visible()
        # The first stage is selected: the only tab in the Tab order, its panel the only one.
        assert _selected(page) == [
            "development true 0 tabpanel true false",
            "test false -1 tabpanel true true",
            "production false -1 tabpanel true true",
            "- false -1 tabpanel true true",
        ]
        expect(page.get_by_role("tabpanel")).to_have_count(1)
        expect(page.get_by_role("tabpanel", name="development")).to_be_visible()

        # Right, Right, Left, End, Right (wraps to the first), Left (wraps to the last), Home.
        tabs.first.focus()
        for key, expected in [
            ("ArrowRight", "test"),
            ("ArrowRight", "production"),
            ("ArrowLeft", "test"),
            ("End", "No stage"),
            ("ArrowRight", "development"),
            ("ArrowLeft", "No stage"),
            ("Home", "development"),
            ("End", "No stage"),
        ]:
            page.keyboard.press(key)
            tab = tablist.get_by_role("tab", name=expected)
            expect(tab).to_be_focused()
            expect(tab).to_have_attribute("aria-selected", "true")
            expect(tab).to_have_attribute("tabindex", "0")
            expect(page.get_by_role("tabpanel")).to_have_count(1)
        expect(page.get_by_role("heading", name="Mail that names no stage")).to_be_visible()
        assert page.evaluate("location.search") == "?stage="

        # Tab leaves the tab list for the open panel (only the selected tab is in the order).
        page.keyboard.press("Shift+Tab")
        expect(tablist.get_by_role("tab", name="No stage")).not_to_be_focused()
        tablist.get_by_role("tab", name="No stage").focus()
        page.keyboard.press("Tab")
        expect(page.get_by_role("tabpanel", name="No stage")).to_be_focused()

        # A click selects too; the address keeps the choice, so a reload opens the same tab.
        tablist.get_by_role("tab", name="production").click()
        assert page.evaluate("location.search + location.hash") == "?stage=production"
        page.reload()
        expect(tablist.get_by_role("tab", name="production")).to_have_attribute(
            "aria-selected", "true"
        )
        expect(page.get_by_role("heading", name="Stage production")).to_be_visible()
        expect(page.get_by_role("heading", name="Stage test")).to_be_hidden()
        # A fragment naming a panel opens it.
        page.goto("/t/acme/apps/billing#stage-test")
        expect(page.get_by_role("tabpanel", name="test")).to_be_visible()
        expect(tablist.get_by_role("tab", name="test")).to_have_attribute("tabindex", "0")


def test_stage_tabs_save_their_own_lists(live: LiveServer, tmp_path: Path) -> None:
    with launch() as browser, signed_in(browser, live.url, OWNER, PASSWORD) as page:
        page.goto("/t/acme/apps/billing")
        tablist = page.get_by_role("tablist", name="Stages")
        tablist.get_by_role("tab", name="test").click()
        panel = page.get_by_role("tabpanel", name="test")
        expect(panel.get_by_role("heading", name="Stage test")).to_be_visible()
        panel.get_by_label("Addresses (one per line)").fill("qa@acme.test")
        users = panel.get_by_label("Users (one e-mail address per line)")
        users.fill("nobody@acme.test")
        panel.get_by_label("Active").check()
        panel.get_by_role("button", name="Save").click()
        # Refused: the same tab is open, with the error at the field and the hint kept.
        panel = page.get_by_role("tabpanel", name="test")
        expect(panel.locator(".field-error")).to_contain_text("nobody@acme.test")
        expect(users).to_have_attribute("aria-invalid", "true")
        described = users.get_attribute("aria-describedby") or ""
        assert described.split() == ["f-stage-test-users-error", "f-stage-test-users-hint"]

        users.fill(OWNER)
        panel.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Test list saved.")).to_be_visible()
        test_tab = tablist.get_by_role("tab", name="test")
        expect(test_tab).to_have_attribute("aria-selected", "true")
        expect(test_tab).to_contain_text("Active")
        expect(
            page.get_by_role("tabpanel", name="test").get_by_label(
                "Users (one e-mail address per line)"
            )
        ).to_have_value(OWNER)
        page.screenshot(path=str(tmp_path / "test-lists.png"), full_page=True)

        tablist.get_by_role("tab", name="production").click()
        panel = page.get_by_role("tabpanel", name="production")
        expect(panel.get_by_role("heading", name="Stage production")).to_be_visible()
        expect(panel.get_by_label("Addresses (one per line)")).to_have_value("")
        expect(panel.get_by_label("Active")).not_to_be_checked()
        expect(tablist.get_by_role("tab", name="production")).not_to_contain_text("Active")

        page.get_by_role("link", name="Apps", exact=True).first.click()
        expect(page.locator("tr", has_text="billing")).to_contain_text("test")

    with httpx.Client(base_url=live.url, headers=ADMIN, timeout=10) as api:
        test = api.get(f"{T}/apps/billing/stages/test/test-list").json()
        assert test["addresses"] == ["qa@acme.test"] and test["active"] is True
        assert [u["email"] for u in test["users"]] == [OWNER]
        assert api.get(f"{T}/apps/billing/stages/production/test-list").json()["active"] is False


def test_without_javascript_every_stage_is_a_visible_section(live: LiveServer) -> None:
    with launch() as browser:
        context = browser.new_context(base_url=live.url, java_script_enabled=False)
        context.set_default_timeout(10_000)
        try:
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("E-mail address").fill(OWNER)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.goto("/t/acme/apps/billing")
            expect(page.get_by_role("tablist")).to_have_count(0)
            stages = page.get_by_role("navigation", name="Stages")
            for name in TABS:
                expect(stages.get_by_role("link", name=name)).to_be_visible()
            for panel in PANELS:
                section = page.locator(f"section#{panel}")
                expect(section).to_be_visible()
                expect(section.get_by_role("button", name="Save")).to_be_visible()
            # A link opens its stage (the server marks it) and jumps to its section.
            stages.get_by_role("link", name="production").click()
            expect(stages.get_by_role("link", name="production")).to_have_attribute(
                "aria-current", "page"
            )
            assert page.evaluate("location.hash") == "#stage-production"
        finally:
            context.close()
