"""The server and account dialogs in a real Chromium: errors that can be found and fixed
by keyboard, presets that set what they imply, the card's Test button."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

import re
from typing import Any

from tests.ui.live import GatedProxy
from tests.ui.test_browser import chromium, expect, live, page, smtp  # noqa: F401


def _open_add_server(page: Any) -> Any:
    page.get_by_role("link", name="Add Server").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Add Mail Server")).to_be_visible()
    return dialog


def test_the_dialog_is_named_by_its_heading(page: Any) -> None:
    _open_add_server(page)
    expect(page.get_by_role("dialog", name="Add Mail Server")).to_be_visible()


def test_an_error_in_advanced_opens_it_focuses_the_field_and_keeps_the_password(
    page: Any,
) -> None:
    dialog = _open_add_server(page)
    dialog.get_by_label("Server Name").fill("Relay with a bad timeout")
    dialog.get_by_label("SMTP Host").fill("smtp.example.com")
    dialog.get_by_label("Authenticate using").select_option("password")
    dialog.get_by_label("SMTP Password").fill("typed-secret")
    advanced = dialog.locator("details")
    advanced.locator("summary").click()
    timeout = dialog.get_by_label("Timeout (seconds)")
    expect(timeout).to_have_attribute("min", "1")  # not the quoted text '"1"'
    timeout.fill("0")
    advanced.locator("summary").click()  # closed again: the error is inside it
    dialog.get_by_role("button", name="Add Server").click()
    timeout = dialog.get_by_label("Timeout (seconds)")
    expect(timeout).to_be_focused()
    expect(dialog.locator("details")).to_have_attribute("open", "")
    expect(dialog.locator('[data-field="timeout_seconds"] .field-error')).to_be_visible()
    expect(dialog.get_by_label("SMTP Password")).to_have_value("typed-secret")


def test_enter_in_the_sender_address_runs_look_up(page: Any) -> None:
    dialog = _open_add_server(page)
    address = dialog.get_by_label("Sender address (fills host, port and security)")
    address.fill("someone@gmail.com")
    address.press("Enter")
    expect(dialog.get_by_label("SMTP Host")).to_have_value("smtp.gmail.com")
    expect(address).to_have_value("someone@gmail.com")  # not submitted, not cleared
    expect(dialog.get_by_role("heading", name="Add Mail Server")).to_be_visible()
    expect(dialog.locator("#resolve-result")).to_contain_text("smtp.gmail.com:587")


def test_the_microsoft_365_preset_sets_microsoft_oauth_and_hides_the_rest(page: Any) -> None:
    dialog = _open_add_server(page)
    dialog.get_by_label("Provider preset").select_option("microsoft365")
    expect(dialog.get_by_label("Authenticate using")).to_have_value("xoauth2")
    expect(dialog.get_by_label("OAuth provider")).to_have_value("microsoft")
    expect(dialog.get_by_label("Client ID")).to_be_visible()
    expect(dialog.get_by_label("Directory (tenant) ID")).to_be_visible()
    expect(dialog.get_by_label("SMTP Password")).to_be_hidden()
    expect(dialog.get_by_label("Service account JSON")).to_be_hidden()
    expect(dialog.get_by_label("Subject (mailbox to act as)")).to_be_hidden()


def test_a_test_error_is_said_once_next_to_its_field(page: Any) -> None:
    dialog = _open_add_server(page)
    dialog.get_by_label("Server Name").fill("Half typed")
    dialog.get_by_label("SMTP Host").fill("smtp.example.com")
    dialog.get_by_label("SMTP Port").fill("25")
    dialog.get_by_role("button", name="Test Connection").click()
    report = dialog.locator("#test-report")
    expect(report).to_contain_text("fix the marked fields")
    error = dialog.locator('[data-field="port"] .field-error')
    expect(error).to_contain_text("port 25 is refused")
    assert error.count() == 1
    expect(dialog.get_by_label("SMTP Port")).to_be_focused()
    assert " — " not in report.inner_text()


def test_keyboard_only_add_a_server_with_a_fixed_error(page: Any) -> None:
    page.get_by_role("link", name="Add Server").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_label("Server Name")).to_be_focused()
    page.keyboard.type("Keyboard relay")
    dialog.get_by_label("Engine").focus()
    dialog.get_by_label("Engine").select_option("capture")
    dialog.get_by_role("button", name="Add Server").focus()
    page.keyboard.press("Enter")
    card = page.locator('[data-server="Keyboard relay"]')
    expect(card).to_be_visible()


def test_the_card_test_button_updates_the_status_badge(page: Any, smtp: GatedProxy) -> None:
    smtp.open()
    dialog = _open_add_server(page)
    dialog.get_by_label("Server Name").fill("Card test relay")
    dialog.get_by_label("SMTP Host").fill("127.0.0.1")
    dialog.get_by_label("SMTP Port").fill(str(smtp.port))
    dialog.get_by_label("Security", exact=True).select_option("none")
    dialog.get_by_role("button", name="Add Server").click()
    card = page.locator('[data-server="Card test relay"]')
    badge = card.locator(".server-status")
    expect(badge).to_have_text("unknown")
    button = card.get_by_role("button", name="Test Card test relay")
    button.click()
    expect(badge).to_have_text("ok")
    expect(card.locator(".test-result")).to_have_text("Connection works.")
    expect(button).to_be_focused()
    page.reload()
    expect(page.locator('[data-server="Card test relay"] .server-status')).to_have_text("ok")
    expect(page.locator('[data-server="Card test relay"] .server-status')).to_have_class(
        re.compile(r"status-ok")
    )
