"""The web UI in a real Chromium (Debian's, headless) against a real Mailgate on loopback.

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing
(``scripts/install_chromium.sh`` and ``pip install playwright`` provide them). Playwright's
browsers are not used: ``executable_path`` points at Debian's Chromium.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.smtp_servers import free_port
from tests.ui.browser import expect, launch, signed_in
from tests.ui.conftest import PASSWORD
from tests.ui.live import GatedProxy, LiveServer, capture_with_account, serving

OWNER = "owner@acme.test"
T = "/api/v1/tenants/acme"


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("live"), owner=OWNER) as server:
        with server.admin_api() as api:
            capture_with_account(
                api,
                "acme",
                {
                    "address": "noreply@acme.test",
                    "display_name": "Acme Support",
                    "is_default": True,
                    "imap": {"host": "imap.acme.test", "username": "noreply@acme.test"},
                },
            )
        yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launch() as browser:
        yield browser


@pytest.fixture
def page(chromium: Any, live: LiveServer) -> Iterator[Any]:
    with signed_in(chromium, live.url, OWNER, PASSWORD) as page:
        expect(page.get_by_role("heading", name="Email Settings", level=1)).to_be_visible()
        yield page


@pytest.fixture
def smtp() -> Iterator[GatedProxy]:
    """A plain aiosmtpd on loopback behind a gated proxy."""
    controller = Controller(_Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    proxy = GatedProxy(controller.port)
    try:
        yield proxy
    finally:
        proxy.close()
        controller.stop()


def test_add_test_and_delete_a_server_in_the_dialog(page: Any, smtp: GatedProxy) -> None:
    page.get_by_role("link", name="Add Server").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Add Mail Server")).to_be_visible()
    dialog.get_by_label("Server Name").fill("Loopback relay")
    dialog.get_by_label("SMTP Host").fill("127.0.0.1")
    dialog.get_by_label("SMTP Port").fill("25")
    dialog.get_by_label("Security", exact=True).select_option("none")
    # The service's rule comes back into the dialog as a field error.
    dialog.get_by_role("button", name="Add Server").click()
    expect(dialog.locator('[data-field="port"] .field-error')).to_contain_text("port 25 is refused")
    expect(dialog.get_by_label("Server Name")).to_have_value("Loopback relay")
    dialog.get_by_label("SMTP Port").fill(str(smtp.port))

    dialog.get_by_role("button", name="Test Connection").click()
    spinner = dialog.locator(".spinner")
    expect(spinner).to_be_visible()
    expect(spinner).to_contain_text("Testing")
    assert smtp.accepted.wait(10), "the test did not connect"
    smtp.open()
    report = dialog.locator("#test-report")
    expect(report).to_contain_text("Connection works")
    expect(spinner).to_be_hidden()
    expect(report).to_contain_text("insecure")
    expect(report.locator(".steps li").first).to_contain_text("connect")

    dialog.get_by_role("button", name="Add Server").click()
    card = page.locator('[data-server="Loopback relay"]')
    expect(card).to_be_visible()
    expect(page.locator(".flash")).to_contain_text("Mail server Loopback relay added.")

    card.get_by_role("link", name="Delete Loopback relay").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text(
        "Are you sure you want to delete Loopback relay? This cannot be undone."
    )
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text("Mail server Loopback relay deleted.")
    expect(card).to_have_count(0)


def _wait_sent(live: LiveServer, message_id: str) -> None:
    """Until the delivery worker has delivered the message (bounded; the worker is woken)."""
    deadline = time.monotonic() + 15
    with live.admin_api() as api:
        while time.monotonic() < deadline:
            if api.get(f"{T}/messages/{message_id}").json()["status"] == "sent":
                return
            time.sleep(0.05)
    pytest.fail("the message was not delivered in time")


def test_a_sent_message_in_email_logs_and_the_captured_mail_viewer(
    page: Any, live: LiveServer
) -> None:
    body = {
        "to": ["alice@example.com"],
        "subject": "Invoice 42",
        "text": "Plain invoice text.",
        "html": "<p>Hello <b>HTML</b> invoice</p><script>document.body.innerHTML='pwned'</script>",
    }
    with live.admin_api() as api:
        r = api.post(f"{T}/messages", json=body)
        assert r.status_code == 202, r.text
    _wait_sent(live, r.json()["id"])

    page.get_by_role("link", name="Email Logs").click()
    page.get_by_label("Status").select_option("sent")
    page.get_by_label("Recipient").fill("alice@example.com")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Invoice 42").click()
    expect(page.get_by_role("heading", name="Invoice 42")).to_be_visible()
    expect(page.locator("table").first).to_contain_text("alice@example.com")
    expect(page.locator(".attempts")).to_contain_text("Attempt 1")
    expect(page.locator(".attempts")).to_contain_text("captured")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)  # sent: nothing to retry

    page.get_by_role("link", name="Captured mail").click()
    page.get_by_role("link", name="Invoice 42").click()
    frame = page.frame_locator("iframe.mail-html")
    expect(frame.locator("b")).to_have_text("HTML")
    expect(frame.locator("body")).not_to_contain_text("pwned")  # scripts never run
    expect(page.locator("iframe.mail-html")).to_have_attribute("sandbox", "")
    page.get_by_role("link", name="Text").click()
    expect(page.locator("pre.mail-text")).to_contain_text("Plain invoice text.")
    page.get_by_role("link", name="Raw").click()
    expect(page.locator("pre.mail-raw")).to_contain_text("Subject: Invoice 42")


def test_sync_button_spins_and_shows_the_answer_or_the_error(page: Any) -> None:
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)  # answered below, once the spinner has been seen

    page.route("**/email-accounts/*/sync", hold)
    card = page.locator('[data-account="noreply@acme.test"]')
    button = card.get_by_role("button", name="Sync Acme Support")
    result = card.locator(".sync-result")
    button.click()
    expect(button).to_have_class(re.compile(r"\bspinning\b"))
    expect(button).to_be_disabled()
    expect(result).to_have_text("Syncing…")
    assert len(held) == 1 and held[0].request.method == "POST"
    assert held[0].request.headers["x-csrf-token"]
    held[0].fulfill(status=200, json={"fetched": 3, "bounces": 1})
    expect(result).to_have_text(
        "Sync done: 3 new messages fetched, 1 bounce (0 recipients marked bounced)."
    )
    expect(button).not_to_have_class(re.compile(r"\bspinning\b"))
    expect(button).to_be_enabled()

    # Unrouted, the request reaches the live API; an error answer is shown as text.
    page.unroute("**/email-accounts/*/sync", hold)
    button.click()
    expect(result).to_have_text(re.compile(r"^(Sync failed: .+|Sync done.*)$"))
    expect(button).to_be_enabled()
