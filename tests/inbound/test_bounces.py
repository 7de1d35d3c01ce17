"""Bounces found in the inbox are matched to the sent message and recipient, end to end."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mailgate.storage.tables import messages, webhook_deliveries
from tests.config.helpers import bearer, new_tenant
from tests.conftest import ADMIN
from tests.delivery.conftest import drain
from tests.inbound.bounces import exim_bounce, postfix_dsn
from tests.inbound.conftest import Inbox, T


async def _sender(inbox: Inbox, tenant: str = "acme") -> dict[str, str]:
    r = await inbox.client.post(
        f"/api/v1/tenants/{tenant}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


async def _send(inbox: Inbox, sender: dict[str, str], tenant: str = "acme") -> dict[str, Any]:
    r = await inbox.client.post(
        f"/api/v1/tenants/{tenant}/messages",
        json={"to": ["gone@example.net", "ok@example.net"], "subject": "Invoice", "text": "Hi."},
        headers=sender,
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


async def _message(inbox: Inbox, message_id: str, tenant: str = "acme") -> dict[str, Any]:
    r = await inbox.client.get(f"/api/v1/tenants/{tenant}/messages/{message_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _bounced_events(inbox: Inbox) -> list[dict[str, Any]]:
    async with inbox.ctx.db.read() as tx:
        rows = await tx.execute(
            select(webhook_deliveries.c.event, webhook_deliveries.c.payload).order_by(
                webhook_deliveries.c.id
            )
        )
        return [dict(payload) for event, payload in rows if event == "message.bounced"]


async def test_a_dsn_marks_the_recipient_bounced_logs_it_and_emits_the_event(inbox: Inbox) -> None:
    hook = await inbox.client.post(
        f"{T}/webhooks",
        json={"url": "https://127.0.0.1:9/hook", "events": ["message.bounced"]},
        headers=ADMIN,
    )
    assert hook.status_code == 201, hook.text
    sent = await _send(inbox, await _sender(inbox))
    await drain(inbox.ctx)
    before = await _message(inbox, sent["id"])
    assert {r["status"] for r in before["recipients"]} == {"sent"}

    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    counts = await inbox.sync_ok()

    assert (counts["stored"], counts["bounces"], counts["bounced_recipients"]) == (1, 1, 1)
    message = await _message(inbox, sent["id"])
    by_email = {r["email"]: r for r in message["recipients"]}
    assert by_email["gone@example.net"]["status"] == "bounced"
    assert by_email["gone@example.net"]["code"] == 550
    assert by_email["gone@example.net"]["reply"].startswith("5.1.1 550 5.1.1")
    assert by_email["ok@example.net"]["status"] == "sent"
    assert message["status"] == "sent"
    log = message["attempts"][-1]
    assert (log["engine"], log["outcome"], log["code"]) == ("imap", "bounced", 550)
    assert "gone@example.net: failed" in log["transcript"]
    assert "reporting MTA: mx.example.org" in log["transcript"]

    [item] = await inbox.items(bounces="true")
    assert item["is_bounce"] and item["matched_message_id"] == sent["id"]
    assert item["bounce"]["original_message_id"] == sent["message_id"]
    assert item["bounce"]["recipients"][0]["applied"] is True

    [event] = await _bounced_events(inbox)
    assert event["type"] == "message.bounced"
    assert event["tenant"] == "acme"
    assert event["message"] == {"id": sent["id"], "message_id": sent["message_id"]}
    assert (event["recipient"], event["outcome"], event["code"]) == (
        "gone@example.net",
        "bounced",
        550,
    )
    assert event["bounce"]["status"] == "5.1.1"

    # A second copy of the same bounce changes nothing and emits nothing.
    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    again = await inbox.sync_ok()
    assert (again["stored"], again["bounces"], again["bounced_recipients"]) == (1, 1, 0)
    assert len(await _bounced_events(inbox)) == 1


async def test_a_quoted_bounce_matches_and_other_tenants_messages_never_do(inbox: Inbox) -> None:
    ours = await _send(inbox, await _sender(inbox))
    await new_tenant(inbox.client, "rival")
    capture = await inbox.client.post(
        "/api/v1/tenants/rival/mail-servers",
        json={"name": "Capture", "engine": "capture"},
        headers=ADMIN,
    )
    r = await inbox.client.post(
        "/api/v1/tenants/rival/email-accounts",
        json={
            "address": "noreply@rival.example",
            "display_name": "Rival",
            "mail_server_id": capture.json()["id"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    theirs = await _send(inbox, await _sender(inbox, "rival"), "rival")
    await drain(inbox.ctx)

    inbox.server.deliver("alice", exim_bounce(theirs["message_id"]))
    inbox.server.deliver("alice", exim_bounce(ours["message_id"]))
    counts = await inbox.sync_ok()

    assert (counts["bounces"], counts["bounced_recipients"]) == (2, 1)
    rival = await _message(inbox, theirs["id"], "rival")
    assert {r["status"] for r in rival["recipients"]} == {"sent"}
    mine = {r["email"]: r["status"] for r in (await _message(inbox, ours["id"]))["recipients"]}
    assert mine == {"gone@example.net": "bounced", "ok@example.net": "sent"}
    items = await inbox.items(bounces="true")
    assert [i["matched_message_id"] for i in items] == [ours["id"], None]


async def _bounced_total(inbox: Inbox, message: dict[str, Any]) -> float:
    from tests.delivery.test_ops_metrics import _samples, _value

    async with inbox.ctx.db.read() as tx:
        row = (
            await tx.execute(
                select(messages.c.tenant_id, messages.c.server_id).where(
                    messages.c.id == message["id"]
                )
            )
        ).one()
    text = (await inbox.client.get("/metrics")).text
    found = _value(
        _samples(text),
        "mailgate_messages_bounced_total",
        tenant=row.tenant_id,
        server=row.server_id,
    )
    return found or 0.0


async def test_each_bounced_recipient_is_counted_once_by_tenant_and_server(
    inbox: Inbox,
) -> None:
    sent = await _send(inbox, await _sender(inbox))
    await drain(inbox.ctx)
    before = await _bounced_total(inbox, sent)
    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    assert (await inbox.sync_ok())["bounced_recipients"] == 1
    assert await _bounced_total(inbox, sent) == before + 1
    # The same bounce read again changes no recipient, so it is not counted again.
    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    assert (await inbox.sync_ok())["bounced_recipients"] == 0
    assert await _bounced_total(inbox, sent) == before + 1
