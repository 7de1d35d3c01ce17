"""Housekeeping purges ingested messages past the retention; what bounces did stays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from mailgate.domain.inbound import (
    Bounce,
    BounceAction,
    BouncedRecipient,
    BounceFormat,
    InboundBatch,
    InboundMessage,
    MailboxCursor,
)
from mailgate.runtime import Context
from mailgate.storage.base import utcnow
from mailgate.storage.inbound import InboundStore
from mailgate.storage.tables import inbound_messages, messages
from mailgate.worker import maintenance
from tests.config.helpers import bearer, new_tenant
from tests.conftest import ADMIN
from tests.delivery.conftest import drain

T = "/api/v1/tenants/acme"
UIDVALIDITY = 41


@dataclass
class Setup:
    client: httpx.AsyncClient
    ctx: Context
    tenant_id: str
    account_id: str
    sent: dict[str, Any]

    def store(self, at: datetime) -> InboundStore:
        return InboundStore(
            self.ctx.db,
            self.ctx.box,
            tenant_id=self.tenant_id,
            account_id=self.account_id,
            clock=lambda: at,
        )

    async def ingest(self, at: datetime, *mail: InboundMessage) -> None:
        store = self.store(at)
        assert await store.begin("test") is not None
        cursor = MailboxCursor("INBOX", UIDVALIDITY, max(m.uid for m in mail))
        await store.save("test", InboundBatch(cursor=cursor, messages=mail))
        await store.finish("test", error=None)

    async def inbox(self) -> list[dict[str, Any]]:
        r = await self.client.get(f"{T}/email-accounts/{self.account_id}/inbox", headers=ADMIN)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def message(self) -> dict[str, Any]:
        r = await self.client.get(f"{T}/messages/{self.sent['id']}", headers=ADMIN)
        assert r.status_code == 200, r.text
        return dict(r.json())


async def _setup(client: httpx.AsyncClient, ctx: Context) -> Setup:
    await new_tenant(client)
    server = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert server.status_code == 201, server.text
    account = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "noreply@acme.example",
            "display_name": "Acme",
            "mail_server_id": server.json()["id"],
            "is_default": True,
            "imap": {"host": "imap.acme.example", "username": "alice", "password": "pw-1"},
        },
        headers=ADMIN,
    )
    assert account.status_code == 201, account.text
    token = await client.post(f"{T}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN)
    assert token.status_code == 201, token.text
    sent = await client.post(
        f"{T}/messages",
        json={"to": ["gone@example.net", "ok@example.net"], "subject": "Invoice", "text": "Hi."},
        headers=bearer(token.json()["token"]),
    )
    assert sent.status_code == 202, sent.text
    await drain(ctx)
    tenant = await client.get(T, headers=ADMIN)
    return Setup(client, ctx, tenant.json()["id"], account.json()["id"], sent.json())


def _mail(uid: int, *, bounce: Bounce | None = None) -> InboundMessage:
    raw = f"Subject: mail {uid}\r\nMessage-ID: <in{uid}@example.org>\r\n\r\nHello\r\n".encode()
    return InboundMessage(
        uid=uid,
        message_id=f"<in{uid}@example.org>",
        sender="someone@example.org",
        subject=f"mail {uid}",
        date=None,
        received_at=None,
        size=len(raw),
        raw=raw,
        bounce=bounce,
    )


def _bounce_of(message_id: str) -> Bounce:
    gone = BouncedRecipient("gone@example.net", BounceAction.FAILED, status="5.1.1", code=550)
    return Bounce(BounceFormat.DSN, message_id, (gone,), reporting_mta="mx.example.org")


async def test_ingested_mail_past_the_retention_is_purged_and_bounces_stay_applied(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    setup = await _setup(client, ctx)
    now = utcnow()
    old = now - timedelta(days=ctx.policy.retention_days, hours=1)
    await setup.ingest(old, _mail(1), _mail(2, bounce=_bounce_of(setup.sent["message_id"])))
    await setup.ingest(now - timedelta(days=1), _mail(3))
    assert [item["uid"] for item in await setup.inbox()] == [3, 2, 1]

    purged = await maintenance.purge_once(ctx)

    assert (purged.inbound, purged.messages) == (2, 0)
    assert [item["uid"] for item in await setup.inbox()] == [3]
    # The bounce's effects live on the sent message, which is younger than the retention.
    message = await setup.message()
    by_email = {r["email"]: r for r in message["recipients"]}
    assert (by_email["gone@example.net"]["status"], by_email["gone@example.net"]["code"]) == (
        "bounced",
        550,
    )
    assert by_email["ok@example.net"]["status"] == "sent"
    [log] = [a for a in message["attempts"] if a["engine"] == "imap"]
    assert log["outcome"] == "bounced"
    assert "reporting MTA: mx.example.org" in log["transcript"]
    # The cursor stays, so the next sync does not fetch the purged mail again.
    cursor = await setup.store(now).cursor("INBOX")
    assert cursor is not None and (cursor.uidvalidity, cursor.last_uid) == (UIDVALIDITY, 3)
    # A second pass has nothing left to do.
    assert (await maintenance.purge_once(ctx)).inbound == 0


async def test_a_bounce_outliving_its_message_keeps_its_row_unmatched(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    setup = await _setup(client, ctx)
    now = utcnow()
    await setup.ingest(
        now - timedelta(days=2), _mail(1, bounce=_bounce_of(setup.sent["message_id"]))
    )
    [before] = await setup.inbox()
    assert before["matched_message_id"] == setup.sent["id"]
    async with ctx.db.transaction() as tx:
        await tx.execute(
            update(messages)
            .where(messages.c.id == setup.sent["id"])
            .values(finished_at=now - timedelta(days=ctx.policy.retention_days + 1))
        )

    purged = await maintenance.purge_once(ctx)

    assert (purged.messages, purged.inbound) == (1, 0)
    [after] = await setup.inbox()
    assert after["id"] == before["id"] and after["matched_message_id"] is None
    assert after["bounce"]["original_message_id"] == setup.sent["message_id"]
    async with ctx.db.read() as tx:
        count = (await tx.execute(select(func.count()).select_from(inbound_messages))).scalar_one()
    assert count == 1
