"""Provider event webhooks: the verification key of each mail server, the event ids already
applied, and applying one event to the message it names.

The key is public (it only verifies), so it is stored in clear. An event id is recorded in
the transaction that applies the event: a retried post finds it and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailgate.domain.provider_events import Change, ProviderEvent
from mailgate.domain.suppression import Source
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc
from mailgate.storage.recipient_events import RecipientEvent, apply_events, find_message
from mailgate.storage.tables import event_webhook_keys, mail_servers, provider_events

PROVIDER = "sendgrid"


@dataclass(frozen=True, slots=True)
class ServerRef:
    id: str
    tenant_id: str
    name: str
    engine: str


@dataclass(frozen=True, slots=True)
class EventKey:
    server_id: str
    provider: str
    public_key: str
    created_at: datetime
    updated_at: datetime


async def server(tx: Tx, server_id: str, *, tenant_id: str | None = None) -> ServerRef:
    """The mail server (of ``tenant_id`` when given), or NotFound."""
    query = select(
        mail_servers.c.id, mail_servers.c.tenant_id, mail_servers.c.name, mail_servers.c.engine
    ).where(mail_servers.c.id == server_id)
    if tenant_id is not None:
        query = query.where(mail_servers.c.tenant_id == tenant_id)
    row = (await tx.execute(query)).first()
    if row is None:
        raise NotFound(f"No mail server {server_id!r}.")
    return ServerRef(id=row.id, tenant_id=row.tenant_id, name=row.name, engine=row.engine)


async def get_key(tx: Tx, server_id: str) -> EventKey | None:
    row = (
        await tx.execute(
            select(event_webhook_keys).where(event_webhook_keys.c.server_id == server_id)
        )
    ).first()
    if row is None:
        return None
    created, updated = as_utc(row.created_at), as_utc(row.updated_at)
    assert created is not None
    assert updated is not None
    return EventKey(row.server_id, row.provider, row.public_key, created, updated)


async def set_key(tx: Tx, ref: ServerRef, public_key: str, *, now: datetime) -> None:
    keys = event_webhook_keys
    done = await tx.execute(
        update(keys).where(keys.c.server_id == ref.id).values(public_key=public_key, updated_at=now)
    )
    if not done.rowcount:
        await tx.execute(
            insert(keys).values(
                server_id=ref.id,
                tenant_id=ref.tenant_id,
                provider=PROVIDER,
                public_key=public_key,
                created_at=now,
                updated_at=now,
            )
        )


async def delete_key(tx: Tx, server_id: str) -> bool:
    done = await tx.execute(
        delete(event_webhook_keys).where(event_webhook_keys.c.server_id == server_id)
    )
    return bool(done.rowcount)


async def first_time(tx: Tx, server_id: str, event_id: str, *, now: datetime) -> bool:
    """Record ``event_id`` for the server; False when it was recorded before (a retry)."""
    seen = (
        await tx.execute(
            select(provider_events.c.event_id).where(
                provider_events.c.server_id == server_id, provider_events.c.event_id == event_id
            )
        )
    ).first()
    if seen is not None:
        return False
    try:
        async with tx.begin_nested():
            await tx.execute(
                insert(provider_events).values(
                    server_id=server_id, event_id=event_id, received_at=now
                )
            )
    except IntegrityError:
        return False  # a concurrent post of the same event won
    return True


async def apply_event(
    tx: Tx, ref: ServerRef, event: ProviderEvent, change: Change, *, now: datetime
) -> bool | None:
    """Apply one event; None when no message of the server's tenant matches it, else
    whether the recipient changed (or an event was recorded)."""
    message = await find_message(
        tx, ref.tenant_id, rfc_message_id=event.smtp_id, remote_id=event.remote_id
    )
    if message is None:
        return None
    details = {
        "provider": PROVIDER,
        "event": event.event,
        "event_id": event.event_id,
        "reason": event.reason or None,
        "type": event.bounce_type,
        "timestamp": event.timestamp,
    }
    [done] = await apply_events(
        tx,
        message,
        [
            RecipientEvent(
                email=event.email,
                status=change.status,
                from_statuses=change.from_statuses,
                webhook=change.webhook,
                suppress=change.suppress,
                code=change.code,
                reply=change.reply,
                details_key="provider_event",
                details=details,
            )
        ],
        engine=PROVIDER,
        source=Source.SENDGRID,
        transcript=[f"SendGrid event {event.event} ({event.event_id}) for mail server {ref.name}"],
        now=now,
    )
    return done
