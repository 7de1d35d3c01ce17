"""The suppression list: search and page it, add and delete entries, import and export CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from mailgate.domain.roles import Permission
from mailgate.domain.suppression import MAX_EMAIL, MAX_NOTE, Reason, Suppression
from mailgate.errors import TooLarge, ValidationFailed
from mailgate.services import suppressions as svc
from mailgate.services.context import Caller
from mailgate.web.api.schemas import Page, Strict
from mailgate.web.deps import CtxDep, Limit, ManageConfig, caller

router = APIRouter(prefix="/api/v1/tenants/{tenant}/suppressions", tags=["suppressions"])

ViewLogs = Annotated[Caller, Depends(caller(Permission.VIEW_EMAIL_LOGS))]
ReasonName = Literal["hard_bounce", "complaint", "unsubscribe", "manual"]
#: Largest CSV an import accepts.
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class SuppressionIn(Strict):
    email: str = Field(min_length=3, max_length=MAX_EMAIL)
    reason: ReasonName = "manual"
    app: str | None = Field(None, description="Only this app's messages; null: every app.")
    note: str | None = Field(None, max_length=MAX_NOTE)
    expires_at: datetime | None = Field(None, description="null: never expires.")


class SuppressionOut(BaseModel):
    id: str
    email: str
    reason: str
    source: str
    app: str | None
    source_message_id: str | None
    note: str | None
    created_at: datetime
    expires_at: datetime | None
    active: bool

    @classmethod
    def of(cls, entry: Suppression, now: datetime) -> SuppressionOut:
        return cls(
            id=entry.id,
            email=entry.email,
            reason=entry.reason.value,
            source=entry.source.value,
            app=entry.app,
            source_message_id=entry.source_message_id,
            note=entry.note,
            created_at=entry.created_at,
            expires_at=entry.expires_at,
            active=entry.is_active(now),
        )


class ImportOut(BaseModel):
    created: int
    updated: int


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("")
async def list_suppressions(
    ctx: CtxDep,
    who: ViewLogs,
    limit: Limit = 50,
    cursor: str | None = None,
    search: Annotated[str | None, Query(max_length=320, description="Part of the address")] = None,
    reason: ReasonName | None = None,
    app: str | None = None,
) -> Page[SuppressionOut]:
    """The tenant's suppressed addresses, newest first."""
    items, nxt = await svc.list_page(
        ctx,
        who,
        limit=limit,
        cursor=cursor,
        search=search,
        reason=Reason(reason) if reason else None,
        app=app,
    )
    now = _now()
    return Page(items=[SuppressionOut.of(e, now) for e in items], next_cursor=nxt)


@router.post("", status_code=201)
async def add_suppression(body: SuppressionIn, ctx: CtxDep, who: ManageConfig) -> SuppressionOut:
    """Suppress an address (for one app, or every app); 409 when it already is."""
    entry = await svc.add(
        ctx,
        who,
        email=body.email,
        reason=Reason(body.reason),
        app=body.app,
        note=body.note,
        expires_at=body.expires_at,
    )
    return SuppressionOut.of(entry, _now())


@router.get("/export", response_class=Response)
async def export_suppressions(ctx: CtxDep, who: ViewLogs) -> Response:
    """The whole list as CSV (``email,reason,app,created_at,expires_at,source_message_id,
    note``); importing it again changes nothing."""
    text = await svc.export(ctx, who)
    return Response(
        text.encode(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="suppressions.csv"',
            "X-Content-Type-Options": "nosniff",
        },
    )


_CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "CSV with a header row naming at least `email`.",
    }
}


@router.post("/import", openapi_extra=_CSV_BODY)
async def import_suppressions(request: Request, ctx: CtxDep, who: ManageConfig) -> ImportOut:
    """Add every row of a CSV (``text/csv``; columns ``email`` and optionally ``reason``,
    ``app``, ``expires_at``, ``note``); a row for an address already listed in the same
    scope replaces it. All rows or none: a bad row is a 422 naming ``line N: column``."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_IMPORT_BYTES:
            raise TooLarge.field("file", f"at most {MAX_IMPORT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed.field("file", "is not UTF-8 text") from None
    counts = await svc.import_csv(ctx, who, text)
    return ImportOut(created=counts.created, updated=counts.updated)


@router.get("/{entry_id}")
async def get_suppression(entry_id: str, ctx: CtxDep, who: ViewLogs) -> SuppressionOut:
    return SuppressionOut.of(await svc.get(ctx, who, entry_id), _now())


@router.delete("/{entry_id}", status_code=204)
async def delete_suppression(entry_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    """Remove the entry: the address may be sent to again."""
    await svc.delete(ctx, who, entry_id)
    return Response(status_code=204)
