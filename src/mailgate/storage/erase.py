"""Erasing one recipient's personal data from a tenant's store (a GDPR erasure request).

What goes, for every message of the tenant addressed to the recipient (as a recipient, or as
an original recipient of mail redirected to a test list):

* the recipient's address, wherever the delivery log keeps it: the recipient row, the
  original recipients, the replies and SMTP transcripts of the attempts, and the payloads of
  webhook deliveries already made — each replaced with ``[erased]``;
* the content: the message body, subject and metadata of every such message that is final
  (sent, failed, cancelled). A message still being delivered to other recipients keeps its
  body until it finishes (they are owed the same bytes); its delivery to the erased
  recipient is stopped now, and a message left with no one to deliver to is cancelled and
  emptied at once;
* inbound mail (bounces, replies) whose sender is the address.

What stays: the message rows (ids, times, statuses of the other recipients) so counts and
the other recipients' log remain true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from mailgate.domain.delivery import FINAL_STATUSES, MessageStatus, RecipientStatus
from mailgate.storage.base import Tx
from mailgate.storage.tables import (
    attempts,
    inbound_messages,
    message_bodies,
    message_recipients,
    messages,
    webhook_deliveries,
    webhooks,
)

ERASED = "[erased]"
_FINAL = [s.value for s in FINAL_STATUSES]
_OPEN_RECIPIENT = (RecipientStatus.PENDING.value, RecipientStatus.DEFERRED.value)


@dataclass(frozen=True, slots=True)
class Erased:
    """How much one erasure changed."""

    messages: int
    bodies_removed: int
    deliveries_stopped: int
    inbound_removed: int


def _scrub(text: str | None, pattern: re.Pattern[str]) -> str | None:
    return None if text is None else pattern.sub(ERASED, text)


def _scrub_json(value: Any, address: str) -> Any:
    if isinstance(value, str):
        return ERASED if value.lower() == address else value
    if isinstance(value, list):
        return [_scrub_json(v, address) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json(v, address) for k, v in value.items()}
    return value


async def _message_ids(tx: Tx, tenant_id: str, address: str) -> set[str]:
    direct = await tx.execute(
        select(message_recipients.c.message_id)
        .join(messages, messages.c.id == message_recipients.c.message_id)
        .where(messages.c.tenant_id == tenant_id, message_recipients.c.email == address)
    )
    ids = {r[0] for r in direct}
    redirected = await tx.execute(
        select(messages.c.id, messages.c.original_recipients).where(
            messages.c.tenant_id == tenant_id, messages.c.redirected.is_(True)
        )
    )
    for message_id, original in redirected:
        if original and _scrub_json(original, address) != original:
            ids.add(message_id)
    return ids


async def erase_recipient(tx: Tx, tenant_id: str, address: str, *, now: datetime) -> Erased:
    """Erase ``address`` (compared case-insensitively) from ``tenant_id``'s store."""
    address = address.strip().lower()
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    ids = await _message_ids(tx, tenant_id, address)
    stopped = 0
    emptied: set[str] = set()
    for message_id in sorted(ids):
        row = (
            await tx.execute(
                select(messages.c.status, messages.c.original_recipients).where(
                    messages.c.id == message_id
                )
            )
        ).one()
        stop = await tx.execute(
            update(message_recipients)
            .where(
                message_recipients.c.message_id == message_id,
                message_recipients.c.email == address,
                message_recipients.c.status.in_(_OPEN_RECIPIENT),
            )
            .values(status=RecipientStatus.FAILED.value, reply="erased on request", updated_at=now)
        )
        stopped += int(stop.rowcount or 0)
        await tx.execute(
            update(message_recipients)
            .where(
                message_recipients.c.message_id == message_id,
                message_recipients.c.email == address,
            )
            .values(email=ERASED)
        )
        status = row.status
        if status not in _FINAL and status != MessageStatus.SENDING.value:
            open_left = (
                await tx.execute(
                    select(func.count())
                    .select_from(message_recipients)
                    .where(
                        message_recipients.c.message_id == message_id,
                        message_recipients.c.status.in_(_OPEN_RECIPIENT),
                    )
                )
            ).scalar_one()
            if not open_left:
                status = MessageStatus.CANCELLED.value
                await tx.execute(
                    update(messages)
                    .where(messages.c.id == message_id)
                    .values(status=status, finished_at=now, updated_at=now, next_attempt_at=None)
                )
        values: dict[str, Any] = {
            "original_recipients": _scrub_json(row.original_recipients, address),
            "updated_at": now,
        }
        if status in _FINAL:
            values |= {"subject": "", "meta": None}
            emptied.add(message_id)
        await tx.execute(update(messages).where(messages.c.id == message_id).values(values))
        for attempt in await tx.execute(
            select(attempts.c.id, attempts.c.reply, attempts.c.transcript).where(
                attempts.c.message_id == message_id
            )
        ):
            await tx.execute(
                update(attempts)
                .where(attempts.c.id == attempt.id)
                .values(
                    reply=_scrub(attempt.reply, pattern),
                    transcript=_scrub(attempt.transcript, pattern),
                )
            )
        for recipient in await tx.execute(
            select(message_recipients.c.position, message_recipients.c.reply).where(
                message_recipients.c.message_id == message_id,
                message_recipients.c.reply.is_not(None),
            )
        ):
            await tx.execute(
                update(message_recipients)
                .where(
                    message_recipients.c.message_id == message_id,
                    message_recipients.c.position == recipient.position,
                )
                .values(reply=_scrub(recipient.reply, pattern))
            )
    bodies = 0
    if emptied:
        removed = await tx.execute(
            delete(message_bodies).where(message_bodies.c.message_id.in_(emptied))
        )
        bodies = int(removed.rowcount or 0)
    if ids:
        hooks = await tx.execute(
            select(webhook_deliveries.c.id, webhook_deliveries.c.payload)
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(webhooks.c.tenant_id == tenant_id, webhook_deliveries.c.status != "pending")
        )
        for hook_id, payload in hooks:
            if isinstance(payload, dict) and payload.get("message", {}).get("id") in ids:
                await tx.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id == hook_id)
                    .values(payload=_scrub_json(payload, address))
                )
    inbound = await tx.execute(
        delete(inbound_messages).where(
            inbound_messages.c.tenant_id == tenant_id,
            func.lower(inbound_messages.c.sender).contains(address, autoescape=True),
        )
    )
    return Erased(
        messages=len(ids),
        bodies_removed=bodies,
        deliveries_stopped=stopped,
        inbound_removed=int(inbound.rowcount or 0),
    )
