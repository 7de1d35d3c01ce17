"""Screenshots of every web UI page at 1280 px and 390 px, for review (``make screenshots``).

Starts a real Mailgate on loopback (as the browser tests do), fills a demo tenant through the
REST API and saves PNGs under ``var/screenshots/`` (or the directory given as argument).
Needs Debian's Chromium (``scripts/install_chromium.sh``) and the ``playwright`` package.
"""

from __future__ import annotations

import base64
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from tests.support.tls import TestCA  # noqa: E402
from tests.ui.live import LiveServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
OWNER, PASSWORD = "owner@demo.test", "correct horse battery staple"
T = "/api/v1/tenants/demo"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def seed(api: httpx.Client) -> dict[str, str]:
    """A tenant with an owner, servers (one trusting a CA keystore), an account, an app,
    messages and a suppression."""
    ok = api.post("/api/v1/tenants", json={"slug": "demo", "name": "Demo Ltd"})
    ok.raise_for_status()
    api.post(f"{T}/users", json={"email": OWNER, "password": PASSWORD, "role": "owner"})
    capture = api.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture", "is_default": True}
    ).json()
    api.post(
        f"{T}/mail-servers",
        json={
            "name": "Office relay",
            "engine": "smtp",
            "host": "smtp.example.com",
            "port": 587,
            "auth": "password",
            "username": "mailer@example.com",
            "password": secrets.token_urlsafe(12),
        },
    )
    api.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@demo.test",
            "display_name": "Demo Support",
            "mail_server_id": capture["id"],
            "is_default": True,
            "imap": {"host": "imap.demo.test", "username": "noreply@demo.test"},
        },
    )
    with tempfile.TemporaryDirectory() as pki:
        pem = TestCA(Path(pki), name="Demo Private CA").ca_pem
    content = base64.b64encode(pem.encode()).decode()
    api.post(f"{T}/keystores", json={"name": "demo-private-ca", "kind": "ca", "content": content})
    api.post(
        f"{T}/mail-servers",
        json={
            "name": "Private relay",
            "engine": "smtp",
            "host": "relay.internal.demo.test",
            "port": 587,
            "ca_keystore": "demo-private-ca",
        },
    )
    api.post(f"{T}/apps", json={"name": "billing"})
    api.put(f"{T}/apps/billing/test-list", json={"addresses": ["qa@demo.test"], "active": False})
    api.post(f"{T}/suppressions", json={"email": "gone@example.com", "reason": "manual"})
    api.put(
        f"{T}/templates/welcome",
        json={"subject": "Welcome {{ name }}", "text": "Hi {{ name }}!", "html": "<p>Hi</p>"},
    )
    api.post(
        f"{T}/dkim-keys",
        json={"domain": "demo.test", "selector": "mail2026", "algorithm": "ed25519"},
    )
    api.post(
        f"{T}/webhooks", json={"url": "https://93.184.216.34/hooks", "events": ["message.bounced"]}
    )
    api.post(
        f"{T}/users", json={"email": "dev@demo.test", "password": PASSWORD, "role": "developer"}
    )
    api.post(f"{T}/tokens", json={"name": "billing-service", "role": "sender"})
    ids = {}
    for n, subject in enumerate(("Invoice 42", "Welcome aboard", "Password reset")):
        body = {
            "to": [f"user{n}@example.com", "second@example.com"][: n + 1],
            "subject": subject,
            "text": f"{subject}: plain text.",
            "html": f"<h1>{subject}</h1><p>Hello from Demo Ltd.</p>",
        }
        ids[subject] = api.post(f"{T}/messages", json=body).json()["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if api.get(f"{T}/messages/{ids['Invoice 42']}").json()["status"] == "sent":
            break
        time.sleep(0.1)
    return ids


def shoot(page: Page, out: Path, name: str) -> None:
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=True)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "var" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    token = "mgadm_" + secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as data:
        live = LiveServer(Path(data), admin_token=token)
        live.start()
        try:
            with httpx.Client(
                base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
            ) as api:
                ids = seed(api)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(base_url=live.url)
                page.goto("/login")
                shoot(page, out, "login")
                page.get_by_label("E-mail address").fill(OWNER)
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                page.get_by_role("button", name="Sign in", exact=True).click()
                page.wait_for_url("**/settings")
                pages = {
                    "settings": "/t/demo/settings",
                    "apps": "/t/demo/apps",
                    "app": "/t/demo/apps/billing",
                    "logs": "/t/demo/logs",
                    "message": f"/t/demo/logs/{ids['Invoice 42']}",
                    "captured": "/t/demo/captured",
                    "suppressions": "/t/demo/suppressions",
                    "audit": "/t/demo/audit",
                    "templates": "/t/demo/templates",
                    "template": "/t/demo/templates/welcome",
                    "dkim": "/t/demo/dkim",
                    "keystores": "/t/demo/keystores",
                    "webhooks": "/t/demo/webhooks",
                    "users": "/t/demo/users",
                    "tokens": "/t/demo/tokens",
                    "server-form": "/t/demo/settings/servers/new",
                    "account-form": "/t/demo/settings/accounts/new",
                }
                for name, path in pages.items():
                    page.goto(path)
                    shoot(page, out, name)
                page.goto("/t/demo/settings")
                page.get_by_role("link", name="Add Server").click()
                page.locator("#form-dialog").get_by_label("Server Name").wait_for()
                page.set_viewport_size({"width": 1280, "height": 900})
                page.screenshot(path=str(out / "server-dialog-desktop.png"))
                # A keystore in use: the delete dialog, then the refusal, on a phone.
                page.set_viewport_size({"width": 390, "height": 844})
                page.goto("/t/demo/keystores")
                page.get_by_role("link", name="Delete demo-private-ca").click()
                page.get_by_role("dialog", name="Delete").wait_for()
                page.screenshot(path=str(out / "keystore-delete-dialog-phone.png"))
                page.get_by_role("dialog").get_by_role("button", name="Delete").click()
                page.get_by_role("alert").wait_for()
                page.screenshot(path=str(out / "keystore-refused-phone.png"), full_page=True)
                browser.close()
        finally:
            live.stop()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
