"""Sending mail and reading the delivery log (Messages part of API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from mailgate.domain.roles import Permission
from mailgate.services import messages as log_svc
from mailgate.services import send as send_svc
from mailgate.services.context import Caller
from mailgate.web.api.json_body import ParsedBodyRoute
from mailgate.web.api.schemas import Page, Strict
from mailgate.web.deps import CtxDep, caller

router = APIRouter(
    prefix="/api/v1/tenants/{tenant}/messages", tags=["messages"], route_class=ParsedBodyRoute
)

Sender = Annotated[Caller, Depends(caller(Permission.SEND_EMAIL))]
Viewer = Annotated[Caller, Depends(caller(Permission.VIEW_EMAIL_LOGS))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class AddressIn(Strict):
    email: str = Field(max_length=320)
    name: str | None = Field(None, max_length=256)


Addr = str | AddressIn


class AttachmentIn(Strict):
    filename: str = Field(max_length=255)
    content_type: str | None = Field(None, max_length=255)
    content: str = Field(description="Base64.")
    content_id: str | None = Field(None, max_length=255, description="Inline image id (cid:).")


class TemplateRef(Strict):
    name: str = Field(max_length=100)
    variables: dict[str, Any] = Field(default_factory=dict)


class MessageIn(Strict):
    app: str | None = None
    stage: str | None = None
    from_: str | None = Field(None, alias="from", max_length=400)
    to: list[Addr] = Field(default_factory=list)
    cc: list[Addr] = Field(default_factory=list)
    bcc: list[Addr] = Field(default_factory=list)
    reply_to: Addr | list[Addr] | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentIn] = Field(default_factory=list)
    template: TemplateRef | None = None
    metadata: dict[str, Any] | None = None
    send_at: datetime | None = None

    def as_item(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True, by_alias=True)
        return data


class BatchIn(Strict):
    _checked_by_items = frozenset({"messages"})

    messages: list[MessageIn] = Field(max_length=send_svc.MAX_BATCH)


class Accepted(BaseModel):
    id: str
    status: Literal["queued"]
    message_id: str


class BatchItem(BaseModel):
    index: int
    status: int
    id: str | None = None
    message_id: str | None = None
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


class BatchOut(BaseModel):
    items: list[BatchItem]


class RecipientOut(BaseModel):
    email: str
    status: str
    code: int | None
    reply: str | None


class AttemptOut(BaseModel):
    n: int
    started_at: datetime
    finished_at: datetime
    server_id: str | None
    engine: str
    outcome: str
    code: int | None
    reply: str | None
    tls_version: str | None
    duration_ms: float
    possible_duplicate: bool
    transcript: str | None


class MessageSummary(BaseModel):
    id: str
    message_id: str
    status: str
    app_id: str | None
    stage: str | None
    server_id: str | None
    account_id: str | None
    mail_from: str
    from_header: str
    subject: str
    redirected: bool
    original_recipients: dict[str, list[str]] | None
    size: int
    attempt_count: int
    metadata: dict[str, Any] | None = None
    send_at: datetime | None
    next_attempt_at: datetime | None
    held: bool
    last_error: str | None
    remote_id: str | None
    display_status: str = Field(
        description="status told apart by the recipients: 'partially sent', 'bounced' or "
        "'failed' for a sent or failed message whose recipients did not all get it"
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def _fields(cls, row: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in row.items() if k in MessageSummary.model_fields}
        data["metadata"] = row["meta"]
        data["attempt_count"] = row["attempts"]
        return data

    @classmethod
    def of(cls, row: dict[str, Any]) -> MessageSummary:
        return cls(**cls._fields(row))


class MessageOut(MessageSummary):
    recipients: list[RecipientOut]
    attempts: list[AttemptOut] = Field(description="Every delivery attempt, oldest first.")

    @classmethod
    def full(cls, row: dict[str, Any]) -> MessageOut:
        return cls(
            **cls._fields(row),
            recipients=[RecipientOut(**r) for r in row["recipients"]],
            attempts=[AttemptOut(**a) for a in row["attempt_log"]],
        )


def _json(status: int, body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


@router.post("", status_code=202, response_model=Accepted)
async def send(
    body: MessageIn, ctx: CtxDep, who: Sender, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Accept a message for delivery: 202 means it is durably queued."""
    outcome = await send_svc.send_one(ctx, who, body.as_item(), idempotency_key=idempotency_key)
    return _json(outcome.status, outcome.body)


@router.post("/batch", response_model=BatchOut)
async def send_batch(
    body: BatchIn, ctx: CtxDep, who: Sender, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Accept up to 500 messages; valid items are committed together."""
    items = [m.as_item() for m in body.messages]
    outcome = await send_svc.send_batch(ctx, who, items, idempotency_key=idempotency_key)
    return _json(outcome.status, outcome.body)


@router.get("/stats")
async def stats(ctx: CtxDep, who: Viewer) -> dict[str, int]:
    """Counts by status: the queue depth an operator watches."""
    return await log_svc.stats(ctx, who)


@router.get("")
async def list_messages(
    ctx: CtxDep,
    who: Viewer,
    status: Literal["queued", "sending", "deferred", "sent", "failed", "cancelled"] | None = None,
    recipient: str | None = None,
    app: str | None = None,
    stage: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    q: Annotated[
        str | None,
        Query(max_length=320, description="Words in the subject, a recipient or the Message-ID"),
    ] = None,
    message_id: Annotated[
        str | None, Query(max_length=500, description="One Message-ID, with or without <>")
    ] = None,
) -> Page[MessageSummary]:
    rows = await log_svc.list_messages(
        ctx,
        who,
        status=status,
        recipient=recipient,
        app=app,
        stage=stage,
        since=since,
        until=until,
        limit=limit + 1,
        cursor=cursor,
        q=q or None,
        message_id=message_id or None,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        items=[MessageSummary.of(r) for r in rows],
        next_cursor=rows[-1]["id"] if more and rows else None,
    )


@router.get("/{message_id}")
async def get_message(message_id: str, ctx: CtxDep, who: Viewer) -> MessageOut:
    """The message with ``recipients`` and ``attempts`` (each with its transcript)."""
    return MessageOut.full(await log_svc.get_message(ctx, who, message_id))


@router.get("/{message_id}/raw", response_class=Response)
async def raw(message_id: str, ctx: CtxDep, who: Viewer) -> Response:
    """The composed RFC 5322 source, exactly as it is sent."""
    data = await log_svc.raw_message(ctx, who, message_id)
    return Response(data, media_type="message/rfc822")


class MessageState(BaseModel):
    """What a retry or cancel answers a caller who may not read the Email Logs."""

    id: str
    status: str
    message_id: str


def _changed(row: dict[str, Any]) -> MessageOut | MessageState:
    return MessageOut.full(row) if "attempt_log" in row else MessageState(**row)


@router.post("/{message_id}/retry")
async def retry(message_id: str, ctx: CtxDep, who: Sender) -> MessageOut | MessageState:
    """Make a deferred, held or failed message due now. An app-bound token may retry only its
    app's messages; a caller without ``email_logs:view`` gets only ``id``, ``status`` and
    ``message_id``."""
    return _changed(await log_svc.retry(ctx, who, message_id))


@router.post("/{message_id}/cancel")
async def cancel(message_id: str, ctx: CtxDep, who: Sender) -> MessageOut | MessageState:
    """Cancel a queued or deferred message; scoped and answered like retry."""
    return _changed(await log_svc.cancel(ctx, who, message_id))
