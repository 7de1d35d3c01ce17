"""``message.received``: ordinary mail (no bounce, no feedback report) that arrived in a
synced inbox, announced to the tenant's webhooks in the transaction that stores it.

The payload carries the header fields (decoded, one line each, at most 100) and a link to
fetch the raw source through the API, so an application can act on replies; when the
mail's ``In-Reply-To`` names a message the tenant sent, that message is named too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from mailgate.domain.ids import new_id
from mailgate.domain.inbound import InboundMessage
from mailgate.domain.webhooks import WebhookEvent
from mailgate.storage.base import Tx
from mailgate.storage.recipient_events import find_message
from mailgate.storage.tables import email_accounts
from mailgate.storage.tenant_events import emit, subscribers, tenant_slug


def raw_path(slug: str, account_id: str, item_id: str) -> str:
    """The API path that returns a stored inbound message's bytes (``email_logs:view``)."""
    return f"/api/v1/tenants/{slug}/email-accounts/{account_id}/inbox/{item_id}/raw"


async def record_received(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    mailbox: str,
    received: Sequence[tuple[str, InboundMessage]],
    *,
    now: datetime,
) -> int:
    """One ``message.received`` event per stored message (``(row id, message)``) for
    every subscribed endpoint; the number of deliveries made."""
    if not received:
        return 0
    hooks = await subscribers(tx, tenant_id, WebhookEvent.RECEIVED)
    if not hooks:
        return 0
    slug = await tenant_slug(tx, tenant_id)
    address = (
        await tx.execute(select(email_accounts.c.address).where(email_accounts.c.id == account_id))
    ).scalar_one()
    payloads: list[dict[str, Any]] = []
    for row_id, message in received:
        replied = (
            await find_message(tx, tenant_id, rfc_message_id=message.in_reply_to)
            if message.in_reply_to
            else None
        )
        payloads.append(
            {
                "id": new_id(),
                "type": WebhookEvent.RECEIVED.value,
                "created_at": now.isoformat(),
                "tenant": slug,
                "account": {"id": account_id, "address": address},
                "inbound": {
                    "id": row_id,
                    "mailbox": mailbox,
                    "message_id": message.message_id,
                    "from": message.sender,
                    "subject": message.subject,
                    "date": message.date.isoformat() if message.date else None,
                    "received_at": (
                        message.received_at.isoformat() if message.received_at else None
                    ),
                    "size": message.size,
                    "truncated": message.truncated,
                    "in_reply_to": message.in_reply_to,
                    "headers": [[name, value] for name, value in message.headers],
                    "raw_url": raw_path(slug, account_id, row_id),
                },
                "in_reply_to_message": (
                    {"id": replied.id, "message_id": replied.message_id} if replied else None
                ),
            }
        )
    return await emit(tx, tenant_id, WebhookEvent.RECEIVED, payloads, now=now, hooks=hooks)
