"""At acceptance a suppressed recipient is left out and named; none left is a 422."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from mailgate.storage.base import utcnow
from mailgate.storage.tables import messages, suppressions, webhook_deliveries
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.support.smtp_servers import RawSmtpServer
from tests.suppressions.conftest import suppress


def _rcpts(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.upper().startswith(b"RCPT TO")]


async def _events(tenant: Tenant, event: str) -> list[dict[str, Any]]:
    async with tenant.ctx.db.read() as tx:
        rows = await tx.execute(
            select(webhook_deliveries.c.payload)
            .where(webhook_deliveries.c.event == event)
            .order_by(webhook_deliveries.c.id)
        )
        return [dict(p) for (p,) in rows]


async def _hook(tenant: Tenant, *events: str) -> None:
    r = await tenant.client.post(
        f"{T}/webhooks",
        json={"url": "https://127.0.0.1:9/hook", "events": list(events)},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text


async def _count(tenant: Tenant) -> int:
    async with tenant.ctx.db.read() as tx:
        return len((await tx.execute(select(messages.c.id))).all())


async def test_a_suppressed_recipient_is_left_out_named_and_never_attempted(tenant: Tenant) -> None:
    await _hook(tenant, "message.suppressed")
    entry = await suppress(tenant, "gone@example.net", reason="hard_bounce")
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port)
        r = await tenant.send(
            stage="production", to=["ok@example.net"], cc=["Gone@Example.net"], subject="Hi"
        )
        assert r.status_code == 202, r.text
        body = r.json()
        await drain(tenant.ctx)
    assert body["suppressed"] == [
        {
            "email": "gone@example.net",
            "suppression": {
                "id": entry["id"],
                "email": "gone@example.net",
                "reason": "hard_bounce",
                "source": "api",
                "app": None,
                "source_message_id": None,
                "created_at": body["suppressed"][0]["suppression"]["created_at"],
                "expires_at": None,
            },
        }
    ]
    assert _rcpts(raw.received) == [b"RCPT TO:<ok@example.net>"]
    message = await tenant.message(body["id"])
    assert message["status"] == "sent"
    statuses = {r["email"]: (r["status"], r["reply"]) for r in message["recipients"]}
    assert statuses["ok@example.net"][0] == "sent"
    status, reply = statuses["gone@example.net"]
    assert status == "suppressed" and entry["id"] in reply and "hard_bounce" in reply
    [event] = await _events(tenant, "message.suppressed")
    assert (event["recipient"], event["outcome"]) == ("gone@example.net", "suppressed")
    assert event["message"]["id"] == body["id"]
    assert event["suppression"]["id"] == entry["id"]


async def test_no_recipient_left_is_a_422_naming_each_and_nothing_is_queued(tenant: Tenant) -> None:
    a = await suppress(tenant, "a@example.net", reason="complaint")
    b = await suppress(tenant, "b@example.net", reason="unsubscribe")
    r = await tenant.send(to=["a@example.net", "B@example.net"])
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["title"] == "All recipients are suppressed"
    [first, second] = problem["errors"]
    assert first["field"] == "to" and "a@example.net" in first["message"]
    assert a["id"] in first["message"] and "complaint" in first["message"]
    assert b["id"] in second["message"] and "unsubscribe" in second["message"]
    assert await _count(tenant) == 0


async def test_the_test_list_applies_first_and_its_addresses_are_checked(tenant: Tenant) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/test-list",
        json={"addresses": ["qa1@test.example", "qa2@test.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    # The real recipient is suppressed but redirected away: only the test list counts.
    await suppress(tenant, "customer@example.net")
    qa1 = await suppress(tenant, "qa1@test.example")
    r = await tenant.send(app="billing", to=["customer@example.net"])
    assert r.status_code == 202, r.text
    assert [s["email"] for s in r.json()["suppressed"]] == ["qa1@test.example"]
    message = await tenant.message(r.json()["id"])
    assert {x["email"]: x["status"] for x in message["recipients"]} == {
        "qa2@test.example": "pending",
        "qa1@test.example": "suppressed",
    }
    await suppress(tenant, "qa2@test.example")
    r = await tenant.send(app="billing", to=["customer@example.net"])
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["test_list", "test_list"]
    assert qa1["id"] in r.json()["errors"][0]["message"]


async def test_app_scope_and_expiry(tenant: Tenant) -> None:
    await tenant.client.post(f"{T}/apps", json={"name": "shop"}, headers=ADMIN)
    await suppress(tenant, "x@example.net", app="billing")
    assert (await tenant.send(app="billing", to=["x@example.net"])).status_code == 422
    assert (await tenant.send(app="shop", to=["x@example.net"])).status_code == 202
    assert (await tenant.send(to=["x@example.net"])).status_code == 202

    later = utcnow() + timedelta(hours=1)
    await suppress(tenant, "y@example.net", expires_at=later.isoformat())
    assert (await tenant.send(to=["y@example.net"])).status_code == 422
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(suppressions)
            .where(suppressions.c.email == "y@example.net")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = await tenant.send(to=["y@example.net"])
    assert r.status_code == 202 and "suppressed" not in r.json()


async def test_batch_items_say_which_recipients_are_suppressed(tenant: Tenant) -> None:
    entry = await suppress(tenant, "gone@example.net")
    r = await tenant.client.post(
        f"{T}/messages/batch",
        json={
            "messages": [
                {"to": ["gone@example.net"], "subject": "1", "text": "."},
                {"to": ["gone@example.net", "ok@example.net"], "subject": "2", "text": "."},
                {"to": ["ok@example.net"], "subject": "3", "text": "."},
            ]
        },
        headers=tenant.sender,
    )
    assert r.status_code == 200, r.text
    first, second, third = r.json()["items"]
    assert (first["index"], first["status"]) == (0, 422)
    assert entry["id"] in first["errors"][0]["message"]
    assert (second["status"], second["suppressed"][0]["email"]) == (202, "gone@example.net")
    assert third["status"] == 202 and "suppressed" not in third
    assert await _count(tenant) == 2
