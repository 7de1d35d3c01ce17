"""Queries behind the gauges of ``/metrics``: the state of the queue and of the servers,
read from the database so every process's work is included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.storage.base import Tx, as_utc
from mailgate.storage.tables import (
    email_accounts,
    mail_servers,
    message_recipients,
    messages,
    tenants,
    webhooks,
)

_WAITING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value, MessageStatus.SENDING.value)


async def queue_depth(tx: Tx) -> list[tuple[str, str | None, str, int]]:
    """``(tenant id, server id, state, count)``; state is the status, or ``held``."""
    rows = await tx.execute(
        select(
            messages.c.tenant_id,
            messages.c.server_id,
            messages.c.status,
            messages.c.held,
            func.count(),
        )
        .where(messages.c.status.in_(_WAITING))
        .group_by(messages.c.tenant_id, messages.c.server_id, messages.c.status, messages.c.held)
    )
    out: dict[tuple[str, str | None, str], int] = {}
    for tenant_id, server_id, status, held, count in rows:
        key = (tenant_id, server_id, "held" if held else status)
        out[key] = out.get(key, 0) + int(count)
    return [(*key, count) for key, count in sorted(out.items(), key=lambda kv: str(kv[0]))]


async def oldest_due(tx: Tx, now: datetime) -> datetime | None:
    """When the message that has waited longest past its due time became due."""
    value = (
        await tx.execute(
            select(func.min(messages.c.next_attempt_at)).where(
                messages.c.next_attempt_at.is_not(None), messages.c.next_attempt_at <= now
            )
        )
    ).scalar_one_or_none()
    return as_utc(value) if value is not None else None


async def servers(tx: Tx) -> list[Any]:
    """Every server: tenant id and slug, id, name, status."""
    return list(
        await tx.execute(
            select(
                mail_servers.c.tenant_id,
                tenants.c.slug,
                mail_servers.c.id,
                mail_servers.c.name,
                mail_servers.c.status,
            )
            .join(tenants, tenants.c.id == mail_servers.c.tenant_id)
            .order_by(mail_servers.c.tenant_id, mail_servers.c.id)
        )
    )


async def bounced(tx: Tx) -> list[tuple[str, str | None, int]]:
    """Messages with a bounced recipient, by tenant and server (those still stored)."""
    rows = await tx.execute(
        select(messages.c.tenant_id, messages.c.server_id, func.count(func.distinct(messages.c.id)))
        .join(message_recipients, message_recipients.c.message_id == messages.c.id)
        .where(message_recipients.c.status == RecipientStatus.BOUNCED.value)
        .group_by(messages.c.tenant_id, messages.c.server_id)
    )
    return [(t, s, int(c)) for t, s, c in rows]


async def failing_imap(tx: Tx) -> list[tuple[str, int]]:
    """Accounts whose last IMAP sync failed, by tenant."""
    rows = await tx.execute(
        select(email_accounts.c.tenant_id, func.count())
        .where(email_accounts.c.last_sync_error.is_not(None))
        .group_by(email_accounts.c.tenant_id)
    )
    return [(t, int(c)) for t, c in rows]


async def webhook_states(tx: Tx) -> list[tuple[str, str, int]]:
    """Webhook endpoints by tenant and state: ``active``, ``failing`` (failing since a
    time, not yet disabled) or ``disabled``."""
    rows = await tx.execute(
        select(webhooks.c.tenant_id, webhooks.c.status, webhooks.c.failing_since)
    )
    out: dict[tuple[str, str], int] = {}
    for tenant_id, status, failing_since in rows:
        state = "failing" if status == "active" and failing_since is not None else status
        out[(tenant_id, state)] = out.get((tenant_id, state), 0) + 1
    return [(t, s, c) for (t, s), c in sorted(out.items())]
