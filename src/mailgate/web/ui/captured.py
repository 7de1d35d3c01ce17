"""The captured-mail viewer: messages delivered by ``capture`` servers, shown like an inbox.

The list holds the tenant's sent messages whose server is a ``capture`` server. A message is
shown as text, as HTML or as its raw source. The HTML is served on its own URL with a
Content-Security-Policy that sandboxes the document (no script, no same-origin access, no
network: images only from ``data:``), and the page frames it in an ``<iframe sandbox>``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from mailgate.domain.delivery import MessageStatus
from mailgate.domain.roles import Permission
from mailgate.domain.servers import Engine
from mailgate.errors import NotFound
from mailgate.services import messages as log_svc
from mailgate.services import servers as server_svc
from mailgate.web.ui.mailview import parse
from mailgate.web.ui.pages import Page, UiRoute, page, render

router = APIRouter(prefix="/t/{tenant}/captured", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_LOGS))]
INBOX_SIZE = 200
VIEWS = ("html", "text", "raw")

#: The captured HTML may style itself and show inline images, and nothing else.
HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


async def _capture_servers(current: Page) -> set[str]:
    servers = await server_svc.list_servers(current.ctx, current.caller)
    return {s.id for s in servers if s.engine is Engine.CAPTURE}


async def _captured(current: Page, message_id: str) -> dict[str, object]:
    message = await log_svc.get_message(current.ctx, current.caller, message_id)
    if message["server_id"] not in await _capture_servers(current):
        raise NotFound(f"No captured message {message_id!r}.")
    return message


@router.get("")
async def inbox(current: Viewer) -> Response:
    capture = await _capture_servers(current)
    rows = []
    if capture:
        found = await log_svc.list_messages(
            current.ctx,
            current.caller,
            status=MessageStatus.SENT.value,
            recipient=None,
            app=None,
            stage=None,
            since=None,
            until=None,
            limit=INBOX_SIZE,
            cursor=None,
        )
        rows = [r for r in found if r["server_id"] in capture]
    return render(current.request, "captured.html", current=current, rows=rows)


@router.get("/{message_id}")
async def captured_message(
    message_id: str, current: Viewer, view: Annotated[str, Query(max_length=8)] = "html"
) -> Response:
    message = await _captured(current, message_id)
    data = await log_svc.raw_message(current.ctx, current.caller, message_id)
    mail = parse(data)
    if view not in VIEWS:
        view = "html"
    if view == "html" and mail.html is None:
        view = "text"
    return render(
        current.request,
        "captured_message.html",
        current=current,
        message=message,
        mail=mail,
        view=view,
        raw=data.decode("utf-8", "replace") if view == "raw" else "",
    )


@router.get("/{message_id}/body.html")
async def captured_html(message_id: str, current: Viewer) -> Response:
    """The HTML body alone, for the sandboxed frame."""
    await _captured(current, message_id)
    mail = parse(await log_svc.raw_message(current.ctx, current.caller, message_id))
    return Response(
        mail.html or "",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": HTML_CSP, "Referrer-Policy": "no-referrer"},
    )
