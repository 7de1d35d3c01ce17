"""The account dialog's sign-in choice and Test inbox report, and the Sending Domains panel,
in a real Chromium against a live Mailgate (answers of the two checks are routed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import expect, launch, signed_in
from tests.ui.conftest import PASSWORD
from tests.ui.live import LiveServer, capture_with_account, serving

OWNER = "owner@acme.test"

INBOX_REPORT = {
    "ok": False,
    "auth": "xoauth2",
    "folder": "INBOX",
    "steps": [
        {"name": "token", "ok": True, "ms": 12.5},
        {"name": "connect", "ok": True, "ms": 1.0},
        {"name": "authenticate", "ok": False, "ms": 9.7},
    ],
    "error": {
        "code": "auth_failed",
        "field": "imap.username",
        "message": "The IMAP server refused the access token.",
        "hint": "Check the mailbox permission.",
    },
    "messages": None,
    "uidvalidity": None,
}

DOMAIN_REPORT = {
    "domain": "acme.test",
    "ok": False,
    "checks": [
        {
            "kind": "dkim",
            "name": "s1._domainkey.acme.test",
            "ok": False,
            "status": "fail",
            "detail": "No TXT record at s1._domainkey.acme.test.",
            "found": [],
            "publish": {"type": "TXT", "name": "s1._domainkey.acme.test", "value": "v=DKIM1; p=K"},
        },
        {
            "kind": "mx",
            "name": "acme.test",
            "ok": True,
            "status": "pass",
            "detail": "Bounces are received by mx.acme.test.",
            "found": ["10 mx.acme.test"],
            "publish": None,
        },
    ],
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            capture_with_account(
                api,
                "acme",
                {
                    "address": "ops@acme.test",
                    "display_name": "Ops",
                    "imap": {
                        "host": "imap.acme.test",
                        "username": "ops@acme.test",
                        "password": "x",
                    },
                },
            )
        yield server


@pytest.fixture
def page(live: LiveServer) -> Iterator[Any]:
    with launch() as browser, signed_in(browser, live.url, OWNER, PASSWORD) as page:
        expect(page.get_by_role("heading", name="Email Settings", level=1)).to_be_visible()
        yield page


def test_sign_in_choice_and_test_inbox_report(page: Any) -> None:
    seen: list[Any] = []

    def answer(route: Any) -> None:
        seen.append(route.request)
        route.fulfill(status=200, json=INBOX_REPORT)

    page.route("**/email-accounts/*/test-inbox", answer)
    page.get_by_role("link", name="Edit Ops").click()
    dialog = page.locator("#account-form")
    password = dialog.locator('input[name="imap.password"]')
    client_id = dialog.locator('input[name="imap.oauth.client_id"]')
    expect(password).to_be_visible()
    expect(client_id).to_be_hidden()
    dialog.locator('select[name="imap.auth"]').select_option("xoauth2")
    expect(client_id).to_be_visible()
    expect(password).to_be_hidden()

    dialog.get_by_role("button", name="Test inbox").click()

    report = dialog.locator("#inbox-report")
    expect(report).to_contain_text("✗ Inbox test failed")
    expect(report.locator("li.fail")).to_have_text("✗ authenticate — 9.7 ms")
    expect(report.locator("li.ok")).to_have_count(2)
    expect(report).to_contain_text("imap.username: Check the mailbox permission.")
    assert seen[0].method == "POST" and seen[0].headers["x-csrf-token"]


def test_domain_panel_shows_each_check_and_the_record_to_publish(page: Any) -> None:
    asked: list[str] = []

    def answer(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, body=json.dumps(DOMAIN_REPORT), content_type="application/json")

    page.route("**/domains/*/check", answer)
    panel = page.locator("#domains")

    panel.get_by_role("button", name="Check DNS of acme.test").click()

    expect(panel).to_contain_text("✗ acme.test needs DNS changes")
    expect(panel.locator('tr[data-kind="dkim"]')).to_contain_text(
        "s1._domainkey.acme.test TXT v=DKIM1; p=K"
    )
    expect(panel.locator('tr[data-kind="mx"]')).to_contain_text("pass: Bounces are received")
    assert asked[0].endswith("/api/v1/tenants/acme/domains/acme.test/check")
