"""The Email Settings page in a real Chromium against a real Mailgate on loopback: the
delete dialog that lists what depends on a server, the banners of routing problems with
the action that fixes them, and the confirmation before a stage is deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import expect, launch, signed_in
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, serving

OWNER = "owner@acme.test"
T = "/api/v1/tenants/acme"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            relay = api.post(
                f"{T}/mail-servers",
                json={
                    "name": "Relay",
                    "engine": "capture",
                    "is_default": True,
                    "stages": ["production"],
                },
            )
            assert relay.status_code == 201, relay.text
            spare = api.post(f"{T}/mail-servers", json={"name": "Spare", "engine": "capture"})
            assert spare.status_code == 201, spare.text
            account = api.post(
                f"{T}/email-accounts",
                json={
                    "address": "noreply@acme.test",
                    "display_name": "Acme",
                    "mail_server_id": relay.json()["id"],
                    "is_default": True,
                },
            )
            assert account.status_code == 201, account.text
        yield server


@pytest.fixture
def page(live: LiveServer) -> Iterator[Any]:
    with launch() as browser, signed_in(browser, live.url, OWNER, PASSWORD) as page:
        expect(page.get_by_role("heading", name="Email Settings", level=1)).to_be_visible()
        yield page


def test_deleting_a_used_server_asks_where_each_dependant_goes_then_banners_say_what_broke(
    page: Any, live: LiveServer
) -> None:
    expect(page.locator('[data-problem="no_route"]')).to_have_count(0)
    page.locator('[data-server="Relay"]').get_by_role("link", name="Delete Relay").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Delete Relay")).to_be_visible()
    expect(dialog).to_contain_text("Stages: production")
    expect(dialog).to_contain_text("Email accounts: noreply@acme.test")
    expect(dialog).to_contain_text("Default server of the tenant")
    expect(dialog).to_contain_text("Are you sure you want to delete Relay?")
    dialog.get_by_label("Stages: production").select_option(label="Spare")
    dialog.get_by_label("Email accounts: noreply@acme.test").select_option(
        label="None (the accounts cannot send)"
    )
    dialog.get_by_label("Default server of the tenant").select_option(label="Spare")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text("Mail server Relay deleted.")
    expect(page.locator('[data-server="Relay"]')).to_have_count(0)
    expect(page.locator('[data-server="Spare"]')).to_contain_text("Default")

    # The account lost its server: a banner says mail is not sent and what fixes it.
    banner = page.locator('[data-problem="account_without_server"]')
    expect(banner).to_contain_text("Mail is not sent:")
    expect(banner).to_contain_text("noreply@acme.test has no mail server")
    expect(banner).to_contain_text("Link a mail server to the email account noreply@acme.test")
    expect(banner.get_by_role("link", name="Go to Email Accounts")).to_be_visible()
    expect(page.locator('[data-problem="no_route"]').first).to_be_visible()
    with live.admin_api() as api:
        r = api.post(f"{T}/messages", json={"to": ["a@example.com"], "subject": "s", "text": "t"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "from"


def test_deleting_a_stage_asks_first(page: Any) -> None:
    row = page.locator("#stages tr", has_text="development")
    row.get_by_role("link", name="Delete stage development").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Are you sure you want to delete the stage development?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(page.locator("#stages")).to_contain_text("development")
    row.get_by_role("link", name="Delete stage development").click()
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text("Stage development deleted.")
    expect(page.locator("#stages tr", has_text="development")).to_have_count(0)
