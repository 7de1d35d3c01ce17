"""The suppression list page: search and page it, add and delete addresses, import a CSV
and download the list (docs/deliverability.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.datastructures import UploadFile

from mailgate.domain.roles import Permission
from mailgate.domain.suppression import Reason
from mailgate.errors import RequestError, ValidationFailed
from mailgate.services import suppressions as svc
from mailgate.web.ui.forms import field_messages
from mailgate.web.ui.pages import Page, UiRoute, page, redirect, render

router = APIRouter(prefix="/t/{tenant}/suppressions", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_LOGS))]
Manager = Annotated[Page, Depends(page(Permission.MANAGE_EMAIL_CONFIGURATIONS))]

PAGE_SIZE = 50
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


async def _list_page(
    current: Page,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    params = current.request.query_params
    search = params.get("q", "")[:320] or None
    cursor = params.get("cursor") or None
    items, nxt = await svc.list_page(
        current.ctx, current.caller, limit=PAGE_SIZE, cursor=cursor, search=search
    )
    return render(
        current.request,
        "suppressions.html",
        current=current,
        status=status,
        items=items,
        next_cursor=nxt,
        search=search or "",
        now=datetime.now(UTC),
        reasons=[r.value for r in Reason],
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
        errors=errors or {},
        message=message,
        values=values or {},
        export_url=f"/api/v1/tenants/{current.tenant}/suppressions/export",
    )


@router.get("")
async def suppressions_page(current: Viewer) -> Response:
    return await _list_page(current)


@router.post("")
async def add_suppression(current: Manager) -> Response:
    form = await current.form()
    values = {k: _text(form.get(k)) for k in ("email", "reason", "app", "note")}
    try:
        try:
            reason = Reason(values["reason"] or "manual")
        except ValueError:
            raise ValidationFailed.field("reason", "choose a reason from the list") from None
        entry = await svc.add(
            current.ctx,
            current.caller,
            email=values["email"],
            reason=reason,
            app=values["app"] or None,
            note=values["note"] or None,
        )
    except RequestError as exc:
        errors, message = field_messages(exc)
        return await _list_page(
            current, status=exc.status, errors=errors, message=message, values=values
        )
    return redirect(current.url("/suppressions"), flash=f"{entry.email} suppressed.")


async def _read_upload(upload: Any) -> str | None:
    """The uploaded file as text (U+FFFD marks bytes that are not UTF-8); None: no file."""
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    return data.decode("utf-8", "replace")


@router.post("/import")
async def import_csv(current: Manager) -> Response:
    form = await current.form()
    upload = form.get("file")
    try:
        text = await _read_upload(upload)
    finally:
        await form.close()  # the spooled upload is a temporary file
    try:
        if text is None:
            raise ValidationFailed.field("file", "choose a CSV file")
        if len(text) > MAX_UPLOAD_BYTES:
            raise ValidationFailed.field("file", f"at most {MAX_UPLOAD_BYTES} bytes")
        if "\ufffd" in text:
            raise ValidationFailed.field("file", "is not UTF-8 text")
        counts = await svc.import_csv(current.ctx, current.caller, text)
    except RequestError as exc:
        errors, message = field_messages(exc)
        first = exc.errors[0] if exc.errors else None
        detail = f"{first.field}: {first.message}" if first else exc.detail
        return await _list_page(
            current, status=exc.status, errors={"file": detail, **errors}, message=message
        )
    return redirect(
        current.url("/suppressions"),
        flash=f"Imported: {counts.created} added, {counts.updated} replaced.",
    )


@router.post("/{entry_id}/delete")
async def delete_suppression(entry_id: str, current: Manager) -> Response:
    entry = await svc.get(current.ctx, current.caller, entry_id)
    await svc.delete(current.ctx, current.caller, entry_id)
    return redirect(current.url("/suppressions"), flash=f"{entry.email} may be sent to again.")
