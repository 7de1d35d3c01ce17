"""What is learnt about a sent message after it left: complaints found in an inbox and
provider events (SendGrid Event Webhook), applied to its recipients.

For each recipient an event names, in the caller's transaction: the recipient's status
changes when the event allows it from the status it has (so an event applied twice
changes nothing the second time), the address is suppressed when the event says so, and
one webhook event is recorded. Each call writes one delivery-log entry (an attempt row
with the engine that reported it) when anything changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.ids import new_id
from mailgate.domain.suppression import Reason, Source
from mailgate.domain.webhooks import WebhookEvent, event_payload
from mailgate.storage.base import Tx
from mailgate.storage.suppressions import NewSuppression, SuppressionRepo, entry_json
from mailgate.storage.tables import attempts, message_recipients, messages
from mailgate.storage.tenant_events import emit, subscribers, tenant_slug

_REPLY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SentMessage:
    id: str
    tenant_id: str
    message_id: str
    attempts: int
    server_id: str | None


@dataclass(frozen=True, slots=True)
class RecipientEvent:
    """One thing learnt about one recipient.

    ``status`` is the recipient's new status (None: unchanged), taken only from one of
    ``from_statuses``; ``webhook`` the event recorded; ``suppress`` the reason of the
    suppression entry made (tenant-wide); ``details`` is added to the webhook payload
    under ``details_key``.
    """

    email: str
    status: RecipientStatus | None
    from_statuses: frozenset[RecipientStatus]
    webhook: WebhookEvent | None
    suppress: Reason | None = None
    code: int | None = None
    reply: str = ""
    details_key: str = "details"
    details: dict[str, Any] = field(default_factory=dict)


def _sent(row: Any) -> SentMessage:
    return SentMessage(
        id=row.id,
        tenant_id=row.tenant_id,
        message_id=row.message_id,
        attempts=int(row.attempts or 0),
        server_id=row.server_id,
    )


_MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.tenant_id,
    messages.c.message_id,
    messages.c.attempts,
    messages.c.server_id,
)


async def find_message(
    tx: Tx,
    tenant_id: str,
    *,
    rfc_message_id: str | None = None,
    remote_id: str | None = None,
) -> SentMessage | None:
    """The tenant's message with that Message-ID, else with that provider id."""
    if rfc_message_id:
        row = (
            await tx.execute(
                select(*_MESSAGE_COLUMNS)
                .where(messages.c.tenant_id == tenant_id, messages.c.message_id == rfc_message_id)
                .order_by(messages.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            return _sent(row)
    if remote_id:
        row = (
            await tx.execute(
                select(*_MESSAGE_COLUMNS)
                .where(messages.c.tenant_id == tenant_id, messages.c.remote_id == remote_id)
                .order_by(messages.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            return _sent(row)
    return None


async def recipients_of(tx: Tx, message_id: str) -> dict[str, tuple[int, RecipientStatus]]:
    """Lower-cased address → (position, status) of a message's recipients."""
    rows = await tx.execute(
        select(
            message_recipients.c.position,
            message_recipients.c.email,
            message_recipients.c.status,
        ).where(message_recipients.c.message_id == message_id)
    )
    return {
        str(email).lower(): (position, RecipientStatus(status)) for position, email, status in rows
    }


async def apply_events(
    tx: Tx,
    message: SentMessage,
    events: Sequence[RecipientEvent],
    *,
    engine: str,
    source: Source,
    transcript: Sequence[str],
    now: datetime,
) -> list[bool]:
    """Apply ``events`` to ``message``; per event, whether it did anything."""
    held = await recipients_of(tx, message.id)
    done: list[bool] = []
    applied: list[RecipientEvent] = []
    repo = SuppressionRepo(tx, message.tenant_id)
    for event in events:
        found = held.get(event.email.lower())
        if found is None:
            done.append(False)
            continue
        position, status = found
        if event.status is not None:
            if status not in event.from_statuses:
                done.append(False)
                continue
            await tx.execute(
                update(message_recipients)
                .where(
                    message_recipients.c.message_id == message.id,
                    message_recipients.c.position == position,
                    message_recipients.c.status == status.value,
                )
                .values(
                    status=event.status.value,
                    code=event.code,
                    reply=event.reply[:_REPLY_CHARS] or None,
                    updated_at=now,
                )
            )
            held[event.email.lower()] = (position, event.status)
        details = dict(event.details)
        if event.suppress is not None:
            entry = await repo.add_automatic(
                NewSuppression(
                    email=event.email,
                    reason=event.suppress,
                    source=source,
                    source_message_id=message.id,
                    note=event.reply[:500] or None,
                ),
                now=now,
            )
            if entry is not None:
                details["suppression"] = entry_json(entry)
        done.append(True)
        applied.append(RecipientEvent(**{**_fields(event), "details": details}))
    if applied:
        await _log(tx, message, applied, engine=engine, transcript=transcript, now=now)
        await _emit(tx, message, applied, now=now)
    return done


def _fields(event: RecipientEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in RecipientEvent.__dataclass_fields__}


def _outcome(event: RecipientEvent) -> str:
    if event.status is not None:
        return event.status.value
    return event.webhook.value.removeprefix("message.") if event.webhook else "event"


async def _log(
    tx: Tx,
    message: SentMessage,
    events: Sequence[RecipientEvent],
    *,
    engine: str,
    transcript: Sequence[str],
    now: datetime,
) -> None:
    lines = [*transcript]
    lines += [f"{e.email}: {_outcome(e)} {e.reply}".rstrip() for e in events]
    first = events[0]
    await tx.execute(
        insert(attempts).values(
            id=new_id(),
            message_id=message.id,
            n=max(message.attempts, 1),
            started_at=now,
            finished_at=now,
            server_id=message.server_id,
            engine=engine,
            worker=None,
            outcome=_outcome(first)[:12],
            code=first.code,
            reply=first.reply[:_REPLY_CHARS] or None,
            tls_version=None,
            duration_ms=0.0,
            possible_duplicate=False,
            transcript="\n".join(lines),
        )
    )


async def _emit(
    tx: Tx, message: SentMessage, events: Sequence[RecipientEvent], *, now: datetime
) -> None:
    slug: str | None = None
    for kind in {e.webhook for e in events if e.webhook is not None}:
        hooks = await subscribers(tx, message.tenant_id, kind)
        if not hooks:
            continue
        slug = slug or await tenant_slug(tx, message.tenant_id)
        payloads = []
        for e in events:
            if e.webhook is not kind:
                continue
            payload = event_payload(
                event_id=new_id(),
                event=kind,
                created_at=now,
                tenant=slug,
                message_id=message.id,
                rfc_message_id=message.message_id,
                recipient=e.email.lower(),
                outcome=_outcome(e),
                code=e.code,
                reply=e.reply[:_REPLY_CHARS] or None,
                attempt=max(message.attempts, 1),
            )
            payload[e.details_key] = e.details
            payloads.append(payload)
        await emit(tx, message.tenant_id, kind, payloads, now=now, hooks=hooks)
