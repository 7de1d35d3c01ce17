"""Cancel and retry act only on what the token may send, and answer only what it may read."""

from __future__ import annotations

from typing import Any

from tests.config.helpers import token_for
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant

SECRET_FIELDS = ("subject", "recipients", "metadata", "original_recipients", "attempts")


async def queued(tenant: Tenant, app: str) -> str:
    body = {
        "app": app,
        "to": ["a@example.com"],
        "bcc": ["hidden@example.com"],
        "subject": "Payroll",
        "text": "Hello.",
        "metadata": {"employee": 7},
        "send_at": "2099-01-01T00:00:00Z",
    }
    r = await tenant.client.post(f"{T}/messages", json=body, headers=ADMIN)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def status_of(tenant: Tenant, message_id: str) -> Any:
    return (await tenant.message(message_id))["status"]


async def test_an_app_bound_token_cannot_touch_another_apps_message(tenant: Tenant) -> None:
    await tenant.client.post(f"{T}/apps", json={"name": "shop"}, headers=ADMIN)
    other = await queued(tenant, "shop")
    for role in ("sender", "developer"):
        bound = await token_for(tenant.client, "acme", role, app="billing")
        for action in ("cancel", "retry"):
            r = await tenant.client.post(f"{T}/messages/{other}/{action}", headers=bound)
            assert r.status_code == 404, (role, action, r.text)
            assert "Payroll" not in r.text and "hidden@" not in r.text
    assert await status_of(tenant, other) == "queued"


async def test_an_app_bound_token_may_cancel_and_retry_its_own_apps_message(
    tenant: Tenant,
) -> None:
    own = await queued(tenant, "billing")
    bound = await token_for(tenant.client, "acme", "developer", app="billing")
    r = await tenant.client.post(f"{T}/messages/{own}/retry", headers=bound)
    assert r.status_code == 200, r.text
    r = await tenant.client.post(f"{T}/messages/{own}/cancel", headers=bound)
    assert r.status_code == 200, r.text
    body = r.json()
    # A developer may read the Email Logs: the answer is the whole message, as GET gives it.
    assert body["status"] == "cancelled" and body["subject"] == "Payroll"
    assert "hidden@example.com" in [x["email"] for x in body["recipients"]]


async def test_a_sender_token_gets_only_the_id_and_status(tenant: Tenant) -> None:
    message_id = await queued(tenant, "billing")
    assert (
        await tenant.client.get(f"{T}/messages/{message_id}", headers=tenant.sender)
    ).status_code == 403
    for action, status in (("retry", "queued"), ("cancel", "cancelled")):
        r = await tenant.client.post(f"{T}/messages/{message_id}/{action}", headers=tenant.sender)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"id", "status", "message_id"}, body
        assert body["id"] == message_id and body["status"] == status
        assert not any(name in body for name in SECRET_FIELDS)
        assert "hidden@example.com" not in r.text and "Payroll" not in r.text
    assert await status_of(tenant, message_id) == "cancelled"
