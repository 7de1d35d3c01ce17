"""The server dialog in a real Chromium: a CA keystore chosen from the select is what the
saved server trusts."""

# ruff: noqa: F811 - the browser fixtures are imported from test_browser
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tests.support.tls import TestCA
from tests.ui.live import LiveServer
from tests.ui.test_browser import T, chromium, expect, live, page  # noqa: F401


def test_a_server_trusts_the_ca_keystore_chosen_in_the_dialog(
    page: Any, live: LiveServer, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    with live.admin_api() as api:
        body = {"name": "corp-ca", "kind": "ca", "content": base64.b64encode(pem.encode()).decode()}
        assert api.post(f"{T}/keystores", json=body).status_code == 201
        page.reload()
        page.get_by_role("link", name="Add Server").click()
        dialog = page.locator("#form-dialog")
        expect(dialog.get_by_role("heading", name="Add Mail Server")).to_be_visible()
        dialog.get_by_label("Server Name").fill("Private relay")
        dialog.get_by_label("SMTP Host").fill("smtp.acme.test")
        choice = dialog.get_by_label("Or trust a CA keystore")
        expect(choice.locator("option")).to_have_text(
            ["None (the certificates above, or the system's only)", "corp-ca"]
        )
        choice.select_option("corp-ca")
        dialog.get_by_role("button", name="Add Server").click()
        expect(page.locator('[data-server="Private relay"]')).to_be_visible()
        servers = api.get(f"{T}/mail-servers").json()["items"]
        saved = next(s for s in servers if s["name"] == "Private relay")
        assert saved["ca_keystore"] == "corp-ca" and saved["ca_certificates"] is None
