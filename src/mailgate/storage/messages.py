"""The delivery log: reading messages, their recipients and attempts; retry, cancel, purge."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update

from mailgate.domain.delivery import MessageStatus, RecipientStatus
from mailgate.errors import Conflict, NotFound
from mailgate.storage.base import Tx, as_utc, utcnow
from mailgate.storage.tables import (
    attempts,
    audit_log,
    message_bodies,
    message_recipients,
    messages,
)

_SUMMARY_COLUMNS = list(messages.c)


@dataclass(frozen=True, slots=True)
class LogFilter:
    status: str | None = None
    recipient: str | None = None
    app_id: str | None = None
    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Words found in the subject, a recipient's address or the Message-ID (any case).
    q: str | None = None
    #: One Message-ID, with or without its angle brackets.
    message_id: str | None = None


def _row_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in (
        "created_at",
        "updated_at",
        "finished_at",
        "send_at",
        "next_attempt_at",
        "lease_expires_at",
        "started_at",
    ):
        if key in data:
            data[key] = as_utc(data[key])
    return data


async def list_messages(
    tx: Tx, tenant_id: str, flt: LogFilter, *, limit: int, before: str | None
) -> list[dict[str, Any]]:
    """Newest first; ``before`` is the last id of the previous page."""
    query = (
        select(*_SUMMARY_COLUMNS)
        .where(messages.c.tenant_id == tenant_id)
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(messages.c.id < before)
    if flt.status:
        query = query.where(messages.c.status == flt.status)
    if flt.app_id:
        query = query.where(messages.c.app_id == flt.app_id)
    if flt.stage:
        query = query.where(messages.c.stage == flt.stage)
    if flt.since:
        query = query.where(messages.c.created_at >= flt.since)
    if flt.until:
        query = query.where(messages.c.created_at < flt.until)
    if flt.recipient:
        query = query.where(
            exists().where(
                message_recipients.c.message_id == messages.c.id,
                message_recipients.c.email == flt.recipient.lower(),
            )
        )
    if flt.message_id:
        bare = flt.message_id.strip().strip("<>")
        query = query.where(messages.c.message_id.in_([bare, f"<{bare}>"]))
    if flt.q:
        words = flt.q.strip().lower()
        query = query.where(
            or_(
                func.lower(messages.c.subject).contains(words, autoescape=True),
                func.lower(messages.c.message_id).contains(words, autoescape=True),
                exists().where(
                    message_recipients.c.message_id == messages.c.id,
                    message_recipients.c.email.contains(words, autoescape=True),
                ),
            )
        )
    return [_row_dict(r) for r in await tx.execute(query)]


async def recipients_of_many(tx: Tx, message_ids: Collection[str]) -> dict[str, list[Any]]:
    """``(email, status)`` of each message's recipients, in order, for a page of the log."""
    found: dict[str, list[Any]] = {m: [] for m in message_ids}
    if not message_ids:
        return found
    rows = await tx.execute(
        select(
            message_recipients.c.message_id,
            message_recipients.c.email,
            message_recipients.c.status,
        )
        .where(message_recipients.c.message_id.in_(list(message_ids)))
        .order_by(message_recipients.c.message_id, message_recipients.c.position)
    )
    for message_id, email, status in rows:
        found[message_id].append((email, status))
    return found


async def server_names_ever(tx: Tx, tenant_id: str, server_ids: Collection[str]) -> dict[str, str]:
    """The last name the audit log knows for each mail server, deleted ones included."""
    if not server_ids:
        return {}
    rows = await tx.execute(
        select(audit_log.c.object_id, audit_log.c.object_name)
        .where(
            audit_log.c.tenant_id == tenant_id,
            audit_log.c.object_type == "mail_server",
            audit_log.c.object_id.in_(list(server_ids)),
            audit_log.c.object_name.is_not(None),
        )
        .order_by(audit_log.c.id)
    )
    return {object_id: name for object_id, name in rows}


async def get_message(
    tx: Tx, tenant_id: str, message_id: str, *, app_id: str | None = None
) -> dict[str, Any]:
    """One message of the tenant; with ``app_id``, only a message sent for that app."""
    query = select(*_SUMMARY_COLUMNS).where(
        messages.c.tenant_id == tenant_id, messages.c.id == message_id
    )
    if app_id is not None:
        query = query.where(messages.c.app_id == app_id)
    row = (await tx.execute(query)).first()
    if row is None:
        raise NotFound(f"No message {message_id!r}.")
    return _row_dict(row)


async def recipients_of(tx: Tx, message_id: str) -> list[dict[str, Any]]:
    rows = await tx.execute(
        select(message_recipients)
        .where(message_recipients.c.message_id == message_id)
        .order_by(message_recipients.c.position)
    )
    return [_row_dict(r) for r in rows]


async def attempts_of(tx: Tx, message_id: str) -> list[dict[str, Any]]:
    rows = await tx.execute(
        select(attempts)
        .where(attempts.c.message_id == message_id)
        .order_by(attempts.c.n, attempts.c.started_at, attempts.c.id)
    )
    return [_row_dict(r) for r in rows]


async def raw_of(tx: Tx, tenant_id: str, message_id: str) -> bytes:
    raw = (
        await tx.execute(
            select(message_bodies.c.raw)
            .join(messages, messages.c.id == message_bodies.c.message_id)
            .where(messages.c.tenant_id == tenant_id, messages.c.id == message_id)
        )
    ).scalar_one_or_none()
    if raw is None:
        raise NotFound(f"No message {message_id!r}.")
    return bytes(raw)


async def retry(tx: Tx, tenant_id: str, message_id: str, *, app_id: str | None = None) -> None:
    """Make a deferred, held or failed message due now; failed recipients are tried again.

    With ``app_id`` (an app-bound caller) a message of another app is not found."""
    current = await get_message(tx, tenant_id, message_id, app_id=app_id)
    status = current["status"]
    if status not in (
        MessageStatus.DEFERRED.value,
        MessageStatus.FAILED.value,
        MessageStatus.QUEUED.value,
    ):
        raise Conflict(f"A {status} message cannot be retried.")
    now = utcnow()
    await tx.execute(
        update(message_recipients)
        .where(
            message_recipients.c.message_id == message_id,
            message_recipients.c.status == RecipientStatus.FAILED.value,
        )
        .values(status=RecipientStatus.PENDING.value, updated_at=now)
    )
    await tx.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(
            status=MessageStatus.DEFERRED.value if status != "queued" else status,
            next_attempt_at=now,
            held=False,
            finished_at=None,
            updated_at=now,
        )
    )


async def set_server(tx: Tx, message_id: str, server_id: str) -> None:
    """Send a waiting message through another server (it was routed again)."""
    await tx.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(server_id=server_id, updated_at=utcnow())
    )


async def cancel(tx: Tx, tenant_id: str, message_id: str, *, app_id: str | None = None) -> None:
    """Cancel a message that is not being sent and not yet final.

    With ``app_id`` (an app-bound caller) a message of another app is not found."""
    current = await get_message(tx, tenant_id, message_id, app_id=app_id)
    if current["status"] not in (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value):
        raise Conflict(f"A {current['status']} message cannot be cancelled.")
    now = utcnow()
    result = await tx.execute(
        update(messages)
        .where(
            messages.c.id == message_id,
            messages.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value]),
        )
        .values(
            status=MessageStatus.CANCELLED.value,
            next_attempt_at=None,
            held=False,
            finished_at=now,
            updated_at=now,
        )
    )
    if not result.rowcount:
        raise Conflict("The message is being sent right now; try again in a moment.")


async def purge_final(
    tx: Tx,
    horizons: Mapping[str, datetime],
    *,
    tenant_ids: Collection[str] | None = None,
    except_tenants: Collection[str] = (),
) -> int:
    """Delete final messages (with recipients, attempts and body) finished before their
    status's horizon: ``horizons`` maps ``sent``, ``failed``, ``cancelled`` and ``bounced``
    (sent messages with a bounced recipient) to a time. Limited to ``tenant_ids`` when
    given, and never in ``except_tenants``. Returns how many messages went."""
    bounced = exists().where(
        message_recipients.c.message_id == messages.c.id,
        message_recipients.c.status == RecipientStatus.BOUNCED.value,
    )
    scope = []
    if tenant_ids is not None:
        scope.append(messages.c.tenant_id.in_(list(tenant_ids)))
    if except_tenants:
        scope.append(messages.c.tenant_id.not_in(list(except_tenants)))
    conditions = [
        (MessageStatus.SENT.value, horizons["sent"], ~bounced),
        (MessageStatus.SENT.value, horizons["bounced"], bounced),
        (MessageStatus.FAILED.value, horizons["failed"], None),
        (MessageStatus.CANCELLED.value, horizons["cancelled"], None),
    ]
    total = 0
    for status, horizon, extra in conditions:
        where = [messages.c.status == status, messages.c.finished_at < horizon, *scope]
        if extra is not None:
            where.append(extra)
        result = await tx.execute(delete(messages).where(*where))
        total += int(result.rowcount or 0)
    return total


async def held_by_server(tx: Tx, tenant_id: str) -> dict[str, int]:
    """How many messages are held, per server, in one tenant."""
    rows = await tx.execute(
        select(messages.c.server_id, func.count())
        .where(messages.c.tenant_id == tenant_id, messages.c.held.is_(True))
        .group_by(messages.c.server_id)
    )
    return {server_id: int(n) for server_id, n in rows if server_id is not None}
