"""Debian's Chromium through Playwright, for the browser tests: launch, sign in, and check
that no page raised a script error. Importing this module skips the importing test module
when Chromium or Playwright is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need {CHROMIUM} (run scripts/install_chromium.sh as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser tests need the playwright package (pip install playwright)",
)
expect = sync_api.expect


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium, closed on exit."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def signed_in(browser: Any, url: str, email: str, password: str) -> Iterator[Any]:
    """A page of a new browser context signed in to the UI at ``url``; on exit, no page may
    have raised a script error."""
    context = browser.new_context(base_url=url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors  # no script error on any page
