"""Bounce matching: a delivery-status notification found in an inbox, applied to the message.

A bounce is matched within the account's tenant by the original Message-ID, then by
recipient address. A recipient that was ``sent`` becomes ``bounced``; the bounce is written
to the message's delivery log (an attempt row, engine ``imap``), a ``message.bounced``
webhook event is recorded and the address is suppressed for the tenant (reason
``hard_bounce``), all in the caller's transaction (a batch of ingested mail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.ids import new_id
from mailgate.domain.inbound import (
    Bounce,
    BouncedRecipient,
    InboundMessage,
)
from mailgate.domain.suppression import Reason, Source
from mailgate.domain.webhooks import WebhookEvent, event_payload
from mailgate.storage.base import Tx
from mailgate.storage.suppressions import NewSuppression, SuppressionRepo
from mailgate.storage.tables import (
    attempts,
    message_recipients,
    messages,
)
from mailgate.storage.tenant_events import emit, subscribers, tenant_slug

BOUNCE_ENGINE = "imap"
_ERROR_CHARS = 2000


def _recipient_json(recipient: BouncedRecipient) -> dict[str, Any]:
    return {
        "email": recipient.email,
        "action": recipient.action.value,
        "status": recipient.status,
        "code": recipient.code,
        "diagnostic": recipient.diagnostic,
    }


def bounce_json(bounce: Bounce, applied: Sequence[bool]) -> dict[str, Any]:
    return {
        "format": bounce.format.value,
        "original_message_id": bounce.original_message_id,
        "reporting_mta": bounce.reporting_mta,
        "recipients": [
            {**_recipient_json(r), "applied": done}
            for r, done in zip(bounce.recipients, applied, strict=True)
        ],
    }


@dataclass(frozen=True, slots=True)
class BounceMatch:
    """What :func:`apply_bounce` did: the matched message's id (None: no message of the
    tenant has that Message-ID) and server, and per reported recipient whether it was
    marked bounced."""

    message_id: str | None
    applied: list[bool]
    server_id: str | None = None


async def apply_bounce(
    tx: Tx, tenant_id: str, inbound: InboundMessage, bounce: Bounce, *, now: datetime
) -> BounceMatch:
    """Mark the recipients ``bounce`` reports failed on the tenant's sent message
    (:class:`BounceMatch` says which). Only a
    recipient whose status is ``sent`` changes, so a bounce read twice (or a delay
    notice) never emits a second event.
    """
    applied = [False] * len(bounce.recipients)
    if not bounce.original_message_id:
        return BounceMatch(None, applied)
    message = (
        await tx.execute(
            select(messages.c.id, messages.c.message_id, messages.c.attempts, messages.c.server_id)
            .where(
                messages.c.tenant_id == tenant_id,
                messages.c.message_id == bounce.original_message_id,
            )
            .order_by(messages.c.id.desc())
            .limit(1)
        )
    ).first()
    if message is None:
        return BounceMatch(None, applied)
    rows = await tx.execute(
        select(message_recipients.c.position, message_recipients.c.email).where(
            message_recipients.c.message_id == message.id,
            message_recipients.c.status == RecipientStatus.SENT.value,
        )
    )
    sent = {str(email).lower(): position for position, email in rows}
    events: list[BouncedRecipient] = []
    for index, recipient in enumerate(bounce.recipients):
        position = sent.get(recipient.email.lower())
        if position is None or not recipient.is_failure:
            continue
        reply = _reply(recipient)
        await tx.execute(
            update(message_recipients)
            .where(
                message_recipients.c.message_id == message.id,
                message_recipients.c.position == position,
                message_recipients.c.status == RecipientStatus.SENT.value,
            )
            .values(
                status=RecipientStatus.BOUNCED.value,
                code=recipient.code,
                reply=reply,
                updated_at=now,
            )
        )
        applied[index] = True
        events.append(recipient)
    if events:
        await _log_bounce(tx, message, inbound, bounce, events, now=now)
        await _record_events(tx, tenant_id, message, bounce, events, now=now)
        await _suppress(tx, tenant_id, message.id, events, now=now)
    return BounceMatch(message.id, applied, message.server_id)


async def _suppress(
    tx: Tx,
    tenant_id: str,
    message_id: str,
    recipients: Sequence[BouncedRecipient],
    *,
    now: datetime,
) -> None:
    """A hard bounce suppresses the address for the whole tenant (docs/deliverability.md)."""
    repo = SuppressionRepo(tx, tenant_id)
    for recipient in recipients:
        await repo.add_automatic(
            NewSuppression(
                email=recipient.email,
                reason=Reason.HARD_BOUNCE,
                source=Source.BOUNCE,
                source_message_id=message_id,
                note=_reply(recipient)[:500],
            ),
            now=now,
        )


def _reply(recipient: BouncedRecipient) -> str:
    parts = [recipient.status or "", recipient.diagnostic or "bounced"]
    return " ".join(p for p in parts if p)[:_ERROR_CHARS]


async def _log_bounce(
    tx: Tx,
    message: Any,
    inbound: InboundMessage,
    bounce: Bounce,
    recipients: Sequence[BouncedRecipient],
    *,
    now: datetime,
) -> None:
    """One delivery-log entry per bounce: the attempt it returns, engine ``imap``."""
    lines = [
        f"bounce ({bounce.format.value}) received {now.isoformat(timespec='seconds')}",
        f"inbound message: {inbound.message_id or '(no Message-ID)'} from {inbound.sender}",
    ]
    if bounce.reporting_mta:
        lines.append(f"reporting MTA: {bounce.reporting_mta}")
    lines += [f"{r.email}: {r.action.value} {_reply(r)}" for r in recipients]
    first = recipients[0]
    await tx.execute(
        insert(attempts).values(
            id=new_id(),
            message_id=message.id,
            n=max(int(message.attempts or 0), 1),
            started_at=now,
            finished_at=now,
            server_id=message.server_id,
            engine=BOUNCE_ENGINE,
            worker=None,
            outcome=RecipientStatus.BOUNCED.value,
            code=first.code,
            reply=_reply(first),
            tls_version=None,
            duration_ms=0.0,
            possible_duplicate=False,
            transcript="\n".join(lines),
        )
    )


async def _record_events(
    tx: Tx,
    tenant_id: str,
    message: Any,
    bounce: Bounce,
    recipients: Sequence[BouncedRecipient],
    *,
    now: datetime,
) -> None:
    """A ``message.bounced`` delivery for every active endpoint subscribed to it."""
    hooks = await subscribers(tx, tenant_id, WebhookEvent.BOUNCED)
    if not hooks:
        return
    slug = await tenant_slug(tx, tenant_id)
    payloads: list[dict[str, Any]] = []
    for recipient in recipients:
        payload = event_payload(
            event_id=new_id(),
            event=WebhookEvent.BOUNCED,
            created_at=now,
            tenant=slug,
            message_id=message.id,
            rfc_message_id=message.message_id,
            recipient=recipient.email,
            outcome=RecipientStatus.BOUNCED.value,
            code=recipient.code,
            reply=_reply(recipient),
            attempt=max(int(message.attempts or 0), 1),
        )
        payload["bounce"] = {
            **_recipient_json(recipient),
            "reporting_mta": bounce.reporting_mta,
            "format": bounce.format.value,
        }
        payloads.append(payload)
    await emit(tx, tenant_id, WebhookEvent.BOUNCED, payloads, now=now, hooks=hooks)
