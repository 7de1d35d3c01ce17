"""Email Logs and the captured-mail viewer over delivered mail (routes, no browser)."""

from __future__ import annotations

from typing import Any

import httpx

from mailgate.services.context import Context
from tests.conftest import ADMIN
from tests.delivery.conftest import drain
from tests.ui.conftest import add_tenant, add_user

T = "/api/v1/tenants/acme"


async def _tenant_with_mail(api: httpx.AsyncClient, ctx: Context) -> dict[str, str]:
    await add_tenant(api, "acme")
    server = await api.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    await api.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.test",
            "display_name": "Acme",
            "mail_server_id": server.json()["id"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    await api.post(f"{T}/apps", json={"name": "billing"}, headers=ADMIN)
    ids = {}
    for subject, to, app in (
        ("First", "a@example.com", None),
        ("Second", "b@example.com", "billing"),
    ):
        body: dict[str, Any] = {
            "to": [to],
            "subject": subject,
            "text": f"{subject} text",
            "html": f"<p>{subject}</p><script>alert(1)</script>",
        }
        if app:
            body["app"] = app
        r = await api.post(f"{T}/messages", json=body, headers=ADMIN)
        assert r.status_code == 202, r.text
        ids[subject] = r.json()["id"]
    await drain(ctx)
    return ids


async def _signed_in(browser_factory: Any, api: httpx.AsyncClient, role: str) -> Any:
    await add_user(api, "acme", f"{role}@acme.test", role)
    b = browser_factory()
    await b.sign_in(f"{role}@acme.test")
    return b


async def test_logs_filter_by_status_recipient_and_app(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    await _tenant_with_mail(api, ctx)
    b = await _signed_in(browser_factory, api, "viewer")
    everything = await b.get("/t/acme/logs")
    assert "First" in everything.text and "Second" in everything.text
    by_recipient = await b.get("/t/acme/logs?recipient=b@example.com")
    assert "Second" in by_recipient.text and ">First<" not in by_recipient.text
    by_app = await b.get("/t/acme/logs?app=billing&status=sent")
    assert "Second" in by_app.text and ">First<" not in by_app.text
    none = await b.get("/t/acme/logs?status=failed")
    assert "No message matches." in none.text
    bad = await b.get("/t/acme/logs?since=yesterday&status=bogus")
    assert bad.status_code == 200
    assert "must be a date and time" in bad.text and "is not a message status" in bad.text


async def test_message_detail_shows_recipients_and_attempts_and_gates_retry(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ids = await _tenant_with_mail(api, ctx)
    viewer = await _signed_in(browser_factory, api, "viewer")
    page = await viewer.get(f"/t/acme/logs/{ids['First']}")
    assert page.status_code == 200
    assert "a@example.com" in page.text and "Attempt 1" in page.text
    assert "captured" in page.text
    # A queued message can be cancelled, but only by a role that may send.
    queued = await api.post(
        f"{T}/messages",
        json={
            "to": ["c@example.com"],
            "subject": "Later",
            "text": "x",
            "send_at": "2999-01-01T00:00:00Z",
        },
        headers=ADMIN,
    )
    assert queued.status_code == 202, queued.text
    later = queued.json()["id"]
    assert "Cancel delivery" not in (await viewer.get(f"/t/acme/logs/{later}")).text
    assert (await viewer.post(f"/t/acme/logs/{later}/cancel")).status_code == 403
    developer = await _signed_in(browser_factory, api, "developer")
    assert "Cancel delivery" in (await developer.get(f"/t/acme/logs/{later}")).text
    r = await developer.post(f"/t/acme/logs/{later}/cancel")
    assert r.status_code == 303
    status = (await api.get(f"{T}/messages/{later}", headers=ADMIN)).json()["status"]
    assert status == "cancelled"


async def test_captured_html_is_served_sandboxed_and_raw_as_text(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ids = await _tenant_with_mail(api, ctx)
    b = await _signed_in(browser_factory, api, "viewer")
    inbox = await b.get("/t/acme/captured")
    assert f"/t/acme/captured/{ids['First']}" in inbox.text
    view = await b.get(f"/t/acme/captured/{ids['First']}")
    assert '<iframe class="mail-html" title="HTML body" sandbox=""' in view.text
    assert "<script>alert(1)</script>" not in view.text  # never inlined in the page
    html = await b.get(f"/t/acme/captured/{ids['First']}/body.html")
    csp = html.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert "<p>First</p>" in html.text
    text = await b.get(f"/t/acme/captured/{ids['First']}?view=text")
    assert "First text" in text.text
    raw = await b.get(f"/t/acme/logs/{ids['First']}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert "Subject: First" in raw.text
