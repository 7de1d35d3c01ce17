"""The keystores page in a real Chromium: each keystore's kind and what uses it, Replace and
Delete in view, and a refused delete (the service's 409) said in words at the page's top."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.support.tls import TestCA
from tests.ui.live import LiveServer
from tests.ui.test_browser import T, chromium, expect, live, page  # noqa: F401

FITS = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def _ca(api: httpx.Client, name: str, pem: str) -> None:
    body = {"name": name, "kind": "ca", "content": base64.b64encode(pem.encode()).decode()}
    assert api.post(f"{T}/keystores", json=body).status_code == 201


def test_keystores_show_their_users_and_a_refused_delete(
    page: Any, live: LiveServer, tmp_path: Path
) -> None:
    with httpx.Client(base_url=live.url, headers=ADMIN, timeout=10) as api:
        _ca(api, "corp-ca", TestCA(tmp_path / "corp").ca_pem)
        _ca(api, "partner-ca", TestCA(tmp_path / "partner").ca_pem)
        relay = {"name": "Relay", "engine": "smtp", "host": "smtp.acme.test", "port": 587}
        r = api.post(f"{T}/mail-servers", json={**relay, "ca_keystore": "corp-ca"})
        assert r.status_code == 201, r.text

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/t/acme/keystores")
    corp = page.locator('[data-keystore="corp-ca"]')
    partner = page.locator('[data-keystore="partner-ca"]')
    expect(corp.locator("dt:text-is('Kind') + dd")).to_contain_text("CA certificates")
    expect(corp.locator(".used-by")).to_have_text("Mail server Relay")
    expect(corp.locator(".used-by").get_by_role("link", name="Relay")).to_be_visible()
    expect(partner.locator(".used-by")).to_have_text("nothing")
    for card in (corp, partner):
        expect(card.get_by_role("button", name="Replace")).to_be_visible()
        expect(card.get_by_role("link", name="Delete")).to_be_visible()
    assert page.evaluate(FITS), "the keystores page scrolls sideways at 390 px"

    # Delete corp-ca: the dialog asks (and fits the screen); the service refuses with 409.
    corp.get_by_role("link", name="Delete corp-ca").click()
    dialog = page.get_by_role("dialog", name="Delete")
    expect(dialog).to_contain_text("It is in use")
    assert page.evaluate(FITS)
    assert page.locator("#confirm-dialog").evaluate("d => d.scrollWidth <= d.clientWidth")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        dialog.get_by_role("button", name="Delete").click()
    assert answer.value.status == 409
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(
        "corp-ca was not deleted: mail server Relay trusts it. First choose another keystore, "
        "or none, in their dialogs (Email Settings), then delete it."
    )
    expect(page.locator('[data-keystore="corp-ca"]')).to_have_class("card refused")
    assert page.evaluate(FITS)

    # Replace corp-ca's certificates with a file chosen in its card.
    renewed = tmp_path / "renewed.pem"
    renewed.write_text(TestCA(tmp_path / "renewed", name="Renewed CA").ca_pem)
    corp = page.locator('[data-keystore="corp-ca"]')
    corp.get_by_label("New certificates for corp-ca (PEM)").set_input_files(renewed)
    corp.get_by_role("button", name="Replace").click()
    expect(page.get_by_role("status")).to_contain_text("Keystore corp-ca replaced")
    expect(page.locator('[data-keystore="corp-ca"]')).to_contain_text("Renewed CA")

    # The unused one goes.
    page.locator('[data-keystore="partner-ca"]').get_by_role("link", name="Delete").click()
    page.get_by_role("dialog", name="Delete").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Keystore deleted.")
    expect(page.locator('[data-keystore="partner-ca"]')).to_have_count(0)
