"""The audit log: configuration changes, newest first (who, what, when; never values)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from mailgate.domain.roles import Permission
from mailgate.services import tenants as tenant_svc
from mailgate.web.ui.pages import Page, UiRoute, page, render

router = APIRouter(prefix="/t/{tenant}/audit", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_CONFIGURATIONS))]
PAGE_SIZE = 100


@router.get("")
async def audit_page(
    current: Viewer, cursor: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    entries = await tenant_svc.list_audit(
        current.ctx, current.caller, limit=PAGE_SIZE + 1, cursor=cursor
    )
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    return render(
        current.request,
        "audit.html",
        current=current,
        entries=entries,
        next_cursor=entries[-1].id if more and entries else None,
    )
