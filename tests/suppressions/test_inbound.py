"""Against a real Dovecot: a hard bounce suppresses the address and the next send says so;
an ARF report becomes a complaint and a suppression; ordinary mail emits
``message.received`` with its header fields and a link to its source."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mailgate.storage.tables import webhook_deliveries
from tests.config.helpers import bearer
from tests.conftest import ADMIN
from tests.delivery.conftest import drain
from tests.inbound.bounces import plain_mail, postfix_dsn
from tests.inbound.conftest import Inbox, T, ca, dovecot, inbox, trust_ca
from tests.suppressions.reports import arf_report

__all__ = ["ca", "dovecot", "inbox", "trust_ca"]


async def _sender(inbox: Inbox) -> dict[str, str]:
    r = await inbox.client.post(
        f"{T}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


async def _send(inbox: Inbox, sender: dict[str, str], to: list[str]) -> Any:
    return await inbox.client.post(
        f"{T}/messages", json={"to": to, "subject": "Invoice", "text": "Hi."}, headers=sender
    )


async def _hook(inbox: Inbox, *events: str) -> None:
    r = await inbox.client.post(
        f"{T}/webhooks",
        json={"url": "https://127.0.0.1:9/hook", "events": list(events)},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text


async def _events(inbox: Inbox, event: str) -> list[dict[str, Any]]:
    async with inbox.ctx.db.read() as tx:
        rows = await tx.execute(
            select(webhook_deliveries.c.payload)
            .where(webhook_deliveries.c.event == event)
            .order_by(webhook_deliveries.c.id)
        )
        return [dict(p) for (p,) in rows]


async def _entries(inbox: Inbox) -> list[dict[str, Any]]:
    r = await inbox.client.get(f"{T}/suppressions", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_bounced_address_is_suppressed_and_the_next_send_says_so(inbox: Inbox) -> None:
    sender = await _sender(inbox)
    r = await _send(inbox, sender, ["gone@example.net", "ok@example.net"])
    assert r.status_code == 202, r.text
    sent = r.json()
    await drain(inbox.ctx)

    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    counts = await inbox.sync_ok()
    assert counts["bounced_recipients"] == 1

    [entry] = await _entries(inbox)
    assert (entry["email"], entry["reason"], entry["source"]) == (
        "gone@example.net",
        "hard_bounce",
        "bounce",
    )
    assert entry["source_message_id"] == sent["id"] and entry["app"] is None
    assert "5.1.1" in entry["note"]

    again = await _send(inbox, sender, ["gone@example.net"])
    assert again.status_code == 422, again.text
    assert entry["id"] in again.json()["errors"][0]["message"]
    mixed = await _send(inbox, sender, ["ok@example.net", "gone@example.net"])
    assert mixed.status_code == 202, mixed.text
    assert mixed.json()["suppressed"][0]["suppression"]["id"] == entry["id"]

    # Read again (a second copy of the bounce): no second entry.
    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    await inbox.sync_ok()
    assert len(await _entries(inbox)) == 1


async def test_an_arf_report_becomes_a_complaint_and_a_suppression(inbox: Inbox) -> None:
    await _hook(inbox, "message.complained")
    sender = await _sender(inbox)
    r = await _send(inbox, sender, ["ok@example.net", "other@example.net"])
    sent = r.json()
    await drain(inbox.ctx)

    inbox.server.deliver("alice", arf_report(sent["message_id"], rcpt="OK@example.net"))
    inbox.server.deliver("alice", arf_report(sent["message_id"], feedback_type="not-spam"))
    counts = await inbox.sync_ok()
    assert (counts["complaints"], counts["bounces"]) == (2, 0)

    message = (await inbox.client.get(f"{T}/messages/{sent['id']}", headers=ADMIN)).json()
    statuses = {x["email"]: x["status"] for x in message["recipients"]}
    assert statuses == {"ok@example.net": "complained", "other@example.net": "sent"}
    log = message["attempts"][-1]
    assert (log["engine"], log["outcome"]) == ("imap", "complained")
    assert "reported by: SomeGenerator/1.0" in log["transcript"]

    [entry] = await _entries(inbox)
    assert (entry["email"], entry["reason"], entry["source"]) == (
        "ok@example.net",
        "complaint",
        "arf",
    )
    [event] = await _events(inbox, "message.complained")
    assert (event["recipient"], event["outcome"]) == ("ok@example.net", "complained")
    assert event["complaint"]["feedback_type"] == "abuse"
    assert event["complaint"]["suppression"]["id"] == entry["id"]

    items = await inbox.items()
    reports = [i for i in items if i["complaint"] is not None]
    assert sorted(i["complaint"]["feedback_type"] for i in reports) == ["abuse", "not-spam"]
    assert all(i["matched_message_id"] == sent["id"] and not i["is_bounce"] for i in reports)

    # The same report again changes nothing.
    inbox.server.deliver("alice", arf_report(sent["message_id"], rcpt="ok@example.net"))
    await inbox.sync_ok()
    assert len(await _events(inbox, "message.complained")) == 1


async def test_ordinary_mail_emits_message_received_with_headers_and_a_raw_link(
    inbox: Inbox,
) -> None:
    await _hook(inbox, "message.received")
    sender = await _sender(inbox)
    sent = (await _send(inbox, sender, ["carol@example.com"])).json()
    await drain(inbox.ctx)
    reply = plain_mail("Re: Invoice", message_id="<reply-1@example.com>").replace(
        b"MIME-Version", b"In-Reply-To: " + sent["message_id"].encode() + b"\r\nMIME-Version"
    )
    inbox.server.deliver("alice", reply)
    inbox.server.deliver("alice", postfix_dsn("<unrelated@elsewhere.example>"))
    await inbox.sync_ok()

    [event] = await _events(inbox, "message.received")
    assert event["type"] == "message.received" and event["tenant"] == "acme"
    assert event["account"] == {"id": inbox.account_id, "address": "noreply@acme.example"}
    got = event["inbound"]
    assert (got["subject"], got["message_id"]) == ("Re: Invoice", "<reply-1@example.com>")
    assert got["in_reply_to"] == sent["message_id"]
    assert ["From", "Carol <carol@example.com>"] in got["headers"]
    assert event["in_reply_to_message"] == {"id": sent["id"], "message_id": sent["message_id"]}
    raw = await inbox.client.get(got["raw_url"], headers=ADMIN)
    assert raw.status_code == 200 and b"Hello from Re: Invoice." in raw.content
