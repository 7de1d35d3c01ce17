"""Accessibility in a real Chromium: WCAG AA text contrast on every page, every dialog named,
no page or dialog wider than a 390 px screen, the focus given back after a dialog, a label
for every form control and its hint named by aria-describedby."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.support.tls import TestCA
from tests.ui.test_browser import T, chromium, expect, live, page  # noqa: F401

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


#: Sideways overflow: the page's and, when one is open, the dialog's.
OVERFLOW = """
() => {
  const root = document.documentElement;
  const out = [];
  if (root.scrollWidth > root.clientWidth) out.push(`page ${root.scrollWidth}`);
  const dialog = document.querySelector("dialog[open]");
  if (dialog && dialog.scrollWidth > dialog.clientWidth) out.push(`dialog ${dialog.scrollWidth}`);
  const clipped = (node) => {
    // Inside a box that scrolls (or clips) sideways by itself, as tables do.
    for (let n = node.parentElement; n && n !== document.body; n = n.parentElement) {
      if (getComputedStyle(n).overflowX !== "visible") return true;
    }
    return false;
  };
  for (const node of (dialog || document.body).querySelectorAll("*")) {
    if (clipped(node)) continue;
    const box = node.getBoundingClientRect();
    if (node.checkVisibility() && box.width && box.right > root.clientWidth + 1) {
      out.push(`${node.tagName}#${node.id}.${node.className} ends at ${Math.round(box.right)}`);
    }
  }
  return out.slice(0, 5);
}
"""

#: Form controls without a label, and hints that their control does not name.
UNLABELLED = """
(root) => {
  const scope = root || document;
  const bad = [];
  for (const c of scope.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const named = (c.labels && c.labels.length) || c.getAttribute("aria-label") ||
      c.getAttribute("aria-labelledby");
    if (!named) bad.push(`no label: ${c.name || c.id}`);
  }
  for (const hint of scope.querySelectorAll(".field .hint, form.replace .hint")) {
    const field = hint.closest(".field, form.replace");
    const controls = field.querySelectorAll("input:not([type=hidden]), select, textarea");
    if (controls.length !== 1) continue;
    const ids = (controls[0].getAttribute("aria-describedby") || "").split(/\\s+/);
    if (!hint.id || !ids.includes(hint.id)) bad.push(`hint not named: ${controls[0].name}`);
  }
  return bad;
}
"""


def _recent_pages(live: Any, tmp_path: Any) -> list[str]:
    """An app with test lists, a CA keystore and a server that trusts it, a suppressed
    address (a table with a hidden header): the pages to check."""
    with httpx.Client(base_url=live.url, headers=ADMIN, timeout=10) as api:
        if api.get(f"{T}/apps/billing").status_code == 404:
            assert api.post(f"{T}/apps", json={"name": "billing"}).status_code == 201
            pem = TestCA(tmp_path / "pki").ca_pem
            content = base64.b64encode(pem.encode()).decode()
            body = {"name": "corp-ca", "kind": "ca", "content": content}
            assert api.post(f"{T}/keystores", json=body).status_code == 201
            relay = {
                "name": "Relay with a rather long name",
                "engine": "smtp",
                "host": "smtp.a-very-long-host-name-for-a-relay.acme.test",
                "port": 587,
                "ca_keystore": "corp-ca",
            }
            assert api.post(f"{T}/mail-servers", json=relay).status_code == 201
            gone = {"email": "gone@example.com", "reason": "manual"}
            assert api.post(f"{T}/suppressions", json=gone).status_code == 201
    return ["/t/acme/apps/billing", "/t/acme/keystores", "/t/acme/settings", "/t/acme/suppressions"]


def test_recent_pages_and_their_dialogs_fit_a_390_px_screen(
    page: Any, live: Any, tmp_path: Any
) -> None:
    # The check itself finds a page that is too wide.
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("() => { document.body.style.minWidth = '600px'; }")
    assert page.evaluate(OVERFLOW)
    for path in _recent_pages(live, tmp_path):
        page.goto(path)
        found = page.evaluate(OVERFLOW)
        assert found == [], f"{path}: {found}"
    page.goto("/t/acme/apps/billing")
    page.get_by_role("tab", name="No stage").click()
    assert page.evaluate(OVERFLOW) == [], "the No stage tab"

    page.goto("/t/acme/keystores")
    page.get_by_role("link", name="Delete corp-ca").click()
    expect(page.get_by_role("dialog", name="Delete")).to_be_visible()
    assert page.evaluate(OVERFLOW) == [], "the keystore's delete dialog"

    page.goto("/t/acme/settings")
    for opener, dialog in [
        ("Add Server", "Add Mail Server"),
        ("Edit Acme Support", "Edit Email Account"),
        ("Edit Relay with a rather long name", "Edit Mail Server"),
        ("Delete Capture", "Delete Capture"),
    ]:
        page.get_by_role("link", name=opener).click()
        expect(page.get_by_role("dialog", name=dialog)).to_be_visible()
        found = page.evaluate(OVERFLOW)
        assert found == [], f"{dialog}: {found}"
        page.keyboard.press("Escape")
    page.get_by_role("link", name="Delete Acme Support").click()
    expect(page.get_by_role("dialog", name="Delete")).to_be_visible()
    assert page.evaluate(OVERFLOW) == [], "the account's delete dialog"


def test_every_control_of_the_recent_pages_has_a_label_and_its_hint(
    page: Any, live: Any, tmp_path: Any
) -> None:
    # The check itself finds a bare input and a hint its control does not name.
    page.evaluate(
        "() => { const f = document.createElement('div'); f.className = 'field';"
        " f.innerHTML = '<input name=bare><p class=hint id=bare-hint>x</p>';"
        " document.body.append(f); }"
    )
    assert page.evaluate(UNLABELLED) == ["no label: bare", "hint not named: bare"]
    for path in _recent_pages(live, tmp_path):
        page.goto(path)
        assert page.evaluate(UNLABELLED) == [], path
    page.goto("/t/acme/settings")
    for opener, dialog in [
        ("Add Server", "Add Mail Server"),
        ("Edit Acme Support", "Edit Email Account"),
        ("Delete Capture", "Delete Capture"),
    ]:
        page.get_by_role("link", name=opener).click()
        expect(page.get_by_role("dialog", name=dialog)).to_be_visible()
        assert page.locator("#form-dialog").evaluate(UNLABELLED) == [], dialog
        page.keyboard.press("Escape")
