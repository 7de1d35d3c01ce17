"""The Email Logs: listing messages, one message with recipients and attempts, retry, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailgate.domain.delivery import display_status
from mailgate.domain.roles import Permission
from mailgate.domain.routing import route_again
from mailgate.errors import Conflict
from mailgate.services.context import Caller, Context
from mailgate.storage import apps, queue
from mailgate.storage import messages as store
from mailgate.storage import server_deletion as deletion_store
from mailgate.storage.base import Tx


async def list_messages(
    ctx: Context,
    caller: Caller,
    *,
    status: str | None,
    recipient: str | None,
    app: str | None,
    stage: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
    q: str | None = None,
    message_id: str | None = None,
) -> list[dict[str, Any]]:
    """A page of the log, newest first; each row has its ``recipient_list`` (email, status)
    and ``display_status`` (:func:`~mailgate.domain.delivery.display_status`)."""
    async with ctx.db.read() as tx:
        app_id = None
        if app is not None:
            found = await apps.find_app(tx, caller.tenant_id, app)
            if found is None:
                return []
            app_id = found.id
        flt = store.LogFilter(
            status=status,
            recipient=recipient,
            app_id=app_id,
            stage=stage,
            since=since,
            until=until,
            q=q,
            message_id=message_id,
        )
        rows = await store.list_messages(tx, caller.tenant_id, flt, limit=limit, before=cursor)
        recipients = await store.recipients_of_many(tx, [r["id"] for r in rows])
    for row in rows:
        row["recipient_list"] = recipients.get(row["id"], [])
        row["display_status"] = display_status(
            row["status"], [status for _, status in row["recipient_list"]]
        )
    return rows


async def server_names(ctx: Context, caller: Caller, server_ids: set[str]) -> dict[str, str]:
    """Names of mail servers by id, for the log: servers deleted since keep their last name."""
    async with ctx.db.read() as tx:
        return await store.server_names_ever(tx, caller.tenant_id, server_ids)


async def get_message(ctx: Context, caller: Caller, message_id: str) -> dict[str, Any]:
    """The message with its recipients and every attempt."""
    async with ctx.db.read() as tx:
        message = await store.get_message(tx, caller.tenant_id, message_id)
        message["recipients"] = await store.recipients_of(tx, message_id)
        message["attempt_log"] = await store.attempts_of(tx, message_id)
    message["display_status"] = display_status(
        message["status"], [r["status"] for r in message["recipients"]]
    )
    return message


async def raw_message(ctx: Context, caller: Caller, message_id: str) -> bytes:
    async with ctx.db.read() as tx:
        return await store.raw_of(tx, caller.tenant_id, message_id)


def may_read_log(caller: Caller) -> bool:
    """Whether the caller may read the Email Logs (subject, recipients, metadata, attempts)."""
    return caller.principal.can(Permission.VIEW_EMAIL_LOGS)


async def _after_change(ctx: Context, caller: Caller, message_id: str) -> dict[str, Any]:
    """What a retry or cancel answers: the whole message to a caller who may read the Email
    Logs, else only its ``id``, ``status`` and ``message_id`` (a sender token)."""
    if may_read_log(caller):
        return await get_message(ctx, caller, message_id)
    async with ctx.db.read() as tx:
        row = await store.get_message(tx, caller.tenant_id, message_id)
    return {key: row[key] for key in ("id", "status", "message_id")}


async def retry(ctx: Context, caller: Caller, message_id: str) -> dict[str, Any]:
    """Make a message due now. An app-bound token may retry only its app's messages: any
    other is not found, as to a caller of another tenant."""
    async with ctx.db.transaction() as tx:
        await store.retry(tx, caller.tenant_id, message_id, app_id=caller.principal.app_id)
        await _reroute(ctx, tx, caller.tenant_id, message_id)
        await queue.notify(tx)
    if ctx.wake is not None:
        ctx.wake()
    return await _after_change(ctx, caller, message_id)


async def _reroute(ctx: Context, tx: Tx, tenant_id: str, message_id: str) -> None:
    """Route a retried message by the configuration now, by the rules of acceptance
    (:func:`~mailgate.domain.routing.route_again`): its stage's server, else its account's
    server, else the tenant default (a new server that took the stage or the account sends
    it). With no route, the message keeps a server that still exists; else 409 saying what
    to fix."""
    row = await store.get_message(tx, tenant_id, message_id)
    routing = await deletion_store.routing_of(tx, [tenant_id])
    route = route_again(
        routing[tenant_id], stage=row.get("stage"), account_id=row.get("account_id")
    )
    if route.server_id is None:
        if row.get("server_id"):
            return
        raise Conflict(f"The message has no mail server: {route.reason}; then retry.")
    if route.server_id != row.get("server_id"):
        await store.set_server(tx, message_id, route.server_id)


async def cancel(ctx: Context, caller: Caller, message_id: str) -> dict[str, Any]:
    """Cancel a queued or deferred message; scoped like :func:`retry`."""
    async with ctx.db.transaction() as tx:
        await store.cancel(tx, caller.tenant_id, message_id, app_id=caller.principal.app_id)
    return await _after_change(ctx, caller, message_id)


async def stats(ctx: Context, caller: Caller) -> dict[str, int]:
    async with ctx.db.read() as tx:
        return await queue.counts_by_status(tx, caller.tenant_id)


async def instance_stats(ctx: Context) -> dict[str, int]:
    """Counts by status over every tenant (``mailgate queue status``, metrics)."""
    async with ctx.db.read() as tx:
        return await queue.counts_by_status(tx)
