"""Email Logs: filtered list, one message (recipients, attempts, transcripts), retry, cancel.

Reads go through :mod:`mailgate.services.messages`, as the REST API's do, with the same
permissions: ``email_logs:view`` to read, ``email:send`` to retry or cancel (the buttons are
shown only with it, and the routes check it again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from mailgate.domain.delivery import FINAL_STATUSES, MessageStatus
from mailgate.domain.roles import Permission
from mailgate.services import apps as app_svc
from mailgate.services import messages as log_svc
from mailgate.services import servers as server_svc
from mailgate.services import tenants as tenant_svc
from mailgate.web.ui.pages import Page, UiRoute, page, redirect, render

router = APIRouter(prefix="/t/{tenant}/logs", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_LOGS))]
Sender = Annotated[Page, Depends(page(Permission.SEND_EMAIL))]
PAGE_SIZE = 50
RETRYABLE = frozenset({MessageStatus.DEFERRED.value, MessageStatus.FAILED.value})
CANCELLABLE = frozenset({MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value})
#: While a listed message has one of these, the page refreshes itself.
IN_FLIGHT = frozenset(
    {MessageStatus.QUEUED.value, MessageStatus.SENDING.value, MessageStatus.DEFERRED.value}
)
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def reply_text(code: int | None, reply: str | None) -> str:
    """A server reply as one phrase: the code once, an enhanced status code said once.

    A bounce stores "5.1.1 550 5.1.1 user unknown"; this reads "550 5.1.1 user unknown".
    """
    text = (reply or "").strip()
    first, _, rest = text.partition(" ")
    if _ENHANCED.fullmatch(first) and first in rest:
        text = rest.strip()
    if code is not None and not text.startswith(str(code)):
        text = f"{code} {text}".strip()
    return text


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The filter form of the Email Logs page, read from the query string."""

    status: str | None = None
    recipient: str | None = None
    app: str | None = None
    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    q: str | None = None
    message_id: str | None = None

    @classmethod
    def read(cls, params: Any) -> tuple[LogQuery, dict[str, str]]:
        errors: dict[str, str] = {}

        def text(name: str) -> str | None:
            value = str(params.get(name) or "").strip()
            return value[:320] or None

        def moment(name: str) -> datetime | None:
            value = text(name)
            if value is None:
                return None
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                errors[name] = "must be a date and time such as 2024-05-01T09:30"
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

        status = text("status")
        if status is not None and status not in {s.value for s in MessageStatus}:
            errors["status"] = "is not a message status"
            status = None
        query = cls(
            status=status,
            recipient=text("recipient"),
            app=text("app"),
            stage=text("stage"),
            since=moment("since"),
            until=moment("until"),
            cursor=text("cursor"),
            q=text("q"),
            message_id=text("message_id"),
        )
        return query, errors


@router.get("")
async def logs_page(current: Viewer) -> Response:
    query, errors = LogQuery.read(current.request.query_params)
    rows = await log_svc.list_messages(
        current.ctx,
        current.caller,
        status=query.status,
        recipient=query.recipient,
        app=query.app,
        stage=query.stage,
        since=query.since,
        until=query.until,
        limit=PAGE_SIZE + 1,
        cursor=query.cursor,
        q=query.q,
        message_id=query.message_id,
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    apps = await app_svc.list_apps(current.ctx, current.caller)
    filtered = any(v for k, v in current.request.query_params.items() if k != "cursor")
    in_flight = any(r["status"] in IN_FLIGHT for r in rows)
    stages = await tenant_svc.list_stages(current.ctx, current.caller)
    params = {k: v for k, v in current.request.query_params.items() if k != "cursor" and v}
    return render(
        current.request,
        "logs.html",
        current=current,
        rows=rows,
        query=query,
        raw=params,
        errors=errors,
        statuses=[s.value for s in MessageStatus],
        apps=apps,
        app_names={a.id: a.name for a in apps},
        stages=stages,
        next_cursor=rows[-1]["id"] if more and rows else None,
        filtered=filtered,
        in_flight=in_flight,
    )


@router.get("/{message_id}")
async def message_page(message_id: str, current: Viewer) -> Response:
    message = await log_svc.get_message(current.ctx, current.caller, message_id)
    servers = await server_svc.list_servers(current.ctx, current.caller)
    names = {s.id: s.name for s in servers}
    mentioned = {a["server_id"] for a in message["attempt_log"] if a["server_id"]}
    if message.get("server_id"):
        mentioned.add(message["server_id"])
    gone = await log_svc.server_names(current.ctx, current.caller, mentioned - names.keys())
    apps = await app_svc.list_apps(current.ctx, current.caller)
    can_send = current.can(Permission.SEND_EMAIL)
    return render(
        current.request,
        "message.html",
        current=current,
        message=message,
        server_names=names,
        gone_servers=gone,
        reply_text=reply_text,
        app_names={a.id: a.name for a in apps},
        can_retry=can_send and (message["status"] in RETRYABLE or bool(message.get("held"))),
        can_cancel=can_send and message["status"] in CANCELLABLE,
        final=MessageStatus(message["status"]) in FINAL_STATUSES,
    )


@router.post("/{message_id}/retry")
async def retry(message_id: str, current: Sender) -> Response:
    await log_svc.retry(current.ctx, current.caller, message_id)
    return redirect(current.url(f"/logs/{message_id}"), flash="The message will be tried again.")


@router.post("/{message_id}/cancel")
async def cancel(message_id: str, current: Sender) -> Response:
    await log_svc.cancel(current.ctx, current.caller, message_id)
    return redirect(current.url(f"/logs/{message_id}"), flash="The message is cancelled.")


@router.get("/{message_id}/raw")
async def raw(message_id: str, current: Viewer) -> Response:
    """The composed source as plain text (never interpreted by the browser)."""
    data = await log_svc.raw_message(current.ctx, current.caller, message_id)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{message_id}.eml"'},
    )
