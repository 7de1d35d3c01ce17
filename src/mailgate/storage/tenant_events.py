"""Webhook events that are not a worker's delivery outcome: one call records one event
type for one tenant, in the caller's transaction (so an event is never lost nor doubled).

Used for bounces, complaints, suppressions, provider events and received mail. Only active
endpoints of the tenant subscribed to the event get a delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from mailgate.domain.ids import new_id
from mailgate.domain.webhooks import DeliveryStatus, WebhookEvent, WebhookStatus
from mailgate.storage.base import Tx
from mailgate.storage.tables import tenants, webhook_deliveries, webhooks


async def subscribers(tx: Tx, tenant_id: str, event: WebhookEvent) -> list[str]:
    """The ids of the tenant's active endpoints subscribed to ``event``."""
    rows = await tx.execute(
        select(webhooks.c.id, webhooks.c.events).where(
            webhooks.c.tenant_id == tenant_id,
            webhooks.c.status == WebhookStatus.ACTIVE.value,
        )
    )
    return [hook_id for hook_id, events in rows if event.value in events]


async def tenant_slug(tx: Tx, tenant_id: str) -> str:
    return str(
        (await tx.execute(select(tenants.c.slug).where(tenants.c.id == tenant_id))).scalar_one()
    )


async def emit(
    tx: Tx,
    tenant_id: str,
    event: WebhookEvent,
    payloads: Sequence[dict[str, Any]],
    *,
    now: datetime,
    hooks: Sequence[str] | None = None,
) -> int:
    """Queue each payload for every subscribed endpoint; the number of deliveries made.

    ``hooks`` (from :func:`subscribers`) saves the query when the caller already has them.
    """
    if not payloads:
        return 0
    targets = list(hooks) if hooks is not None else await subscribers(tx, tenant_id, event)
    rows = [
        {
            "id": new_id(),
            "webhook_id": hook_id,
            "event": event.value,
            "payload": payload,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for payload in payloads
        for hook_id in targets
    ]
    if rows:
        await tx.execute(insert(webhook_deliveries), rows)
    return len(rows)
