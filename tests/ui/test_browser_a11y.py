"""Accessibility in a real Chromium: WCAG AA text contrast on every page, every dialog named,
no page wider than a 390 px screen, the focus given back after a dialog."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

from typing import Any

from tests.ui.test_browser import chromium, expect, live, page  # noqa: F401

PAGES = [
    "/t/acme/settings",
    "/t/acme/apps",
    "/t/acme/logs",
    "/t/acme/captured",
    "/t/acme/suppressions",
    "/t/acme/templates",
    "/t/acme/templates/new",
    "/t/acme/dkim",
    "/t/acme/keystores",
    "/t/acme/webhooks",
    "/t/acme/audit",
    "/t/acme/users",
    "/t/acme/tokens",
]

#: Every visible element with its own text: its colour against the first opaque background
#: behind it (WCAG 2.x relative luminance); the ratios under 4.5 (3 for large text).
LOW_CONTRAST = """
() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const background = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (!own || !node.checkVisibility()) continue;
    if (["OPTION", "SCRIPT", "STYLE"].includes(node.tagName)) continue;
    const style = getComputedStyle(node);
    if (style.visibility === "hidden" || Number(style.opacity) < 0.5) continue;
    const fg = rgb(style.color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(node))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = node.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${node.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""


def test_every_page_has_aa_text_contrast(page: Any) -> None:
    # The check itself finds pale text (#aaa on white is 2.3:1).
    page.evaluate(
        "() => { const p = document.createElement('p'); p.textContent = 'pale';"
        " p.style.color = '#aaaaaa'; p.style.background = '#ffffff'; document.body.append(p); }"
    )
    assert any('"pale"' in item for item in page.evaluate(LOW_CONTRAST))
    for path in [*PAGES, "/t/acme/logs?q=nothing"]:
        page.goto(path)
        assert page.evaluate(LOW_CONTRAST) == [], path


def test_no_new_page_scrolls_sideways_at_390_px(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"


def test_dialogs_are_named_and_give_the_focus_back(page: Any) -> None:
    opener = page.get_by_role("link", name="Add Server")
    opener.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Add Mail Server")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#form-dialog")).not_to_be_visible()
    expect(opener).to_be_focused()

    edit = page.get_by_role("link", name="Edit Acme Support")
    edit.click()
    expect(page.get_by_role("dialog", name="Edit Email Account")).to_be_visible()
    page.locator("#form-dialog").get_by_role("link", name="Cancel").click()
    expect(edit).to_be_focused()

    delete = page.get_by_role("link", name="Delete Acme Support")
    delete.click()
    expect(page.get_by_role("dialog", name="Delete")).to_be_visible()
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    expect(delete).to_be_focused()
