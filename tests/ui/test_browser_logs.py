"""Email Logs in a real Chromium: refresh while mail is in flight, narrow screens, keyboard."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.ui.live import LiveServer
from tests.ui.test_browser import T, chromium, expect, live, page  # noqa: F401

PAGES = [
    "/t/acme/settings",
    "/t/acme/apps",
    "/t/acme/logs",
    "/t/acme/captured",
    "/t/acme/suppressions",
    "/t/acme/audit",
]


def _send(live: LiveServer, subject: str, **extra: Any) -> str:
    with live.admin_api() as api:
        body = {"to": ["carol@example.com"], "subject": subject, "text": "x", **extra}
        r = api.post(f"{T}/messages", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])


def test_the_list_refreshes_itself_while_a_message_is_in_flight(
    page: Any, live: LiveServer
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message = _send(live, "Scheduled report", send_at=later)
    page.goto("/t/acme/logs")
    row = page.locator(f'tr[data-message="{message}"]')
    expect(row).to_contain_text("queued")
    expect(page.locator("#log-results")).to_contain_text("refreshes every 5 seconds")
    with live.admin_api() as api:
        assert api.post(f"{T}/messages/{message}/cancel").status_code == 200
    expect(page.locator(f'tr[data-message="{message}"]')).to_contain_text(
        "cancelled", timeout=15_000
    )


def test_no_page_scrolls_sideways_at_390_px(page: Any, live: LiveServer) -> None:
    _send(live, "A subject long enough to need the whole width of a narrow phone screen")
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"


def test_search_the_log_by_keyboard(page: Any, live: LiveServer) -> None:
    _send(live, "Keyboard searchable")
    page.goto("/t/acme/logs")
    page.get_by_label("Search").focus()
    page.keyboard.type("keyboard searchable")
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Keyboard searchable")).to_be_visible()
    expect(page.get_by_label("Search")).to_have_value("keyboard searchable")
