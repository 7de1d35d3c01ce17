"""Inbound (IMAP): sync or test an email account's inbox now; list and read what was ingested."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mailgate.domain.inbound import SyncCounts
from mailgate.domain.roles import Permission
from mailgate.inbound.check import InboxReport
from mailgate.services import inbound as inbound_svc
from mailgate.services.context import Caller
from mailgate.services.ratelimit import SyncRateLimit
from mailgate.web.api.schemas import Page
from mailgate.web.deps import CtxDep, Limit, ManageConfig, app_object, caller
from mailgate.web.problems import PROBLEM

router = APIRouter(prefix="/api/v1/tenants/{tenant}/email-accounts", tags=["email accounts"])

ViewLogs = Annotated[Caller, Depends(caller(Permission.VIEW_EMAIL_LOGS))]


def get_sync_limiter(request: Request) -> SyncRateLimit:
    """The application's manual-sync rate limits (``app.state.sync_limiter``)."""
    return app_object(request, "sync_limiter", SyncRateLimit, SyncRateLimit)


SyncLimiter = Annotated[SyncRateLimit, Depends(get_sync_limiter)]


class SyncOut(BaseModel):
    """What one sync did: messages fetched, stored, skipped as already held, bounces read
    and recipients marked bounced."""

    mailbox: str
    uidvalidity: int
    uidvalidity_changed: bool
    fetched: int
    stored: int
    duplicates: int
    bounces: int
    bounced_recipients: int
    complaints: int = 0

    @classmethod
    def of(cls, counts: SyncCounts) -> SyncOut:
        return cls(
            mailbox=counts.mailbox,
            uidvalidity=counts.uidvalidity,
            uidvalidity_changed=counts.uidvalidity_changed,
            fetched=counts.fetched,
            stored=counts.stored,
            duplicates=counts.duplicates,
            bounces=counts.bounces,
            bounced_recipients=counts.bounced_recipients,
            complaints=counts.complaints,
        )


class InboxStepOut(BaseModel):
    name: str
    ok: bool
    ms: float


class InboxErrorOut(BaseModel):
    code: str
    field: str
    message: str
    hint: str


class InboxTestOut(BaseModel):
    """The report of an inbox test; ``ok`` is true exactly when ``error`` is null."""

    ok: bool
    auth: str
    folder: str
    steps: list[InboxStepOut]
    error: InboxErrorOut | None
    messages: int | None
    uidvalidity: int | None

    @classmethod
    def of(cls, report: InboxReport) -> InboxTestOut:
        error = None
        if report.error is not None:
            e = report.error
            error = InboxErrorOut(code=e.code.value, field=e.field, message=e.message, hint=e.hint)
        return cls(
            ok=report.ok,
            auth=report.auth.value,
            folder=report.folder,
            steps=[InboxStepOut(name=s.name, ok=s.ok, ms=round(s.ms, 1)) for s in report.steps],
            error=error,
            messages=report.messages,
            uidvalidity=report.uidvalidity,
        )


class InboxMessageOut(BaseModel):
    id: str
    mailbox: str
    uidvalidity: int
    uid: int
    message_id: str | None
    sender: str
    subject: str
    date: datetime | None
    received_at: datetime | None
    size: int
    truncated: bool
    is_bounce: bool
    bounce: dict[str, Any] | None
    matched_message_id: str | None
    created_at: datetime
    complaint: dict[str, Any] | None = None


_SYNC_FAILED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Too many manual syncs (problem+json, with `Retry-After` in seconds)",
        "content": {PROBLEM: {}},
    },
    502: {
        "description": "The IMAP server could not be read (problem+json with `code` and `hint`)",
        "content": {PROBLEM: {}},
    },
}


@router.post("/{account_id}/sync", response_model=SyncOut, responses=_SYNC_FAILED)
async def sync(account_id: str, ctx: CtxDep, who: ManageConfig, limiter: SyncLimiter) -> Any:
    """Fetch what is new in the account's IMAP inbox now and match the bounces found.

    409 while another sync of the account runs; 422 when it has no IMAP inbox; 429 with
    ``Retry-After`` past the manual-sync rate limits (per token or user, and per tenant;
    nothing is dialled then); 502 with an error ``code`` and a ``hint`` when the server
    cannot be reached or refuses the login.
    """
    try:
        counts = await inbound_svc.sync_now(ctx, who, account_id, limiter=limiter)
    except inbound_svc.SyncFailed as exc:
        body = {
            "type": "about:blank",
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            "code": exc.code,
            "hint": exc.hint,
            "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
        }
        return JSONResponse(body, status_code=exc.status, media_type=PROBLEM)
    return SyncOut.of(counts)


@router.post(
    "/{account_id}/test-inbox", response_model=InboxTestOut, responses={429: _SYNC_FAILED[429]}
)
async def test_inbox(account_id: str, ctx: CtxDep, who: ManageConfig, limiter: SyncLimiter) -> Any:
    """Reach the account's stored IMAP inbox step by step and report each step.

    ``token`` (OAuth), ``connect``, ``tls`` or ``greeting``/``starttls``, ``login`` (or
    ``authenticate`` for XOAUTH2) and ``select``; nothing is synced. 200 with ``ok`` false
    and an ``error`` (code, field, message, hint) when a step fails; 422 when the account
    has no inbox or lacks its password or OAuth settings; 429 past the manual-sync limits.
    """
    report = await inbound_svc.check_inbox(ctx, who, account_id, limiter=limiter)
    return InboxTestOut.of(report)


@router.get("/{account_id}/inbox")
async def inbox(
    account_id: str,
    ctx: CtxDep,
    who: ViewLogs,
    limit: Limit = 50,
    cursor: str | None = None,
    bounces: Annotated[bool, Query(description="Only bounces")] = False,
) -> Page[InboxMessageOut]:
    """The messages ingested from the account's inbox, newest first."""
    items, nxt = await inbound_svc.list_inbox(
        ctx, who, account_id, limit=limit, cursor=cursor, bounces_only=bounces
    )
    out = [InboxMessageOut.model_validate(item, from_attributes=True) for item in items]
    return Page(items=out, next_cursor=nxt)


@router.get("/{account_id}/inbox/{item_id}/raw", response_class=Response)
async def inbox_raw(account_id: str, item_id: str, ctx: CtxDep, who: ViewLogs) -> Response:
    """The message as fetched (its header only when it exceeded the size limit)."""
    data = await inbound_svc.inbox_raw(ctx, who, account_id, item_id)
    return Response(
        data,
        media_type="message/rfc822",
        headers={"Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff"},
    )
