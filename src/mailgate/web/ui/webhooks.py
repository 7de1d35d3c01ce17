"""Webhooks: endpoints with their events and status, delivery history, rotate, enable, delete.

Changes go through :mod:`mailgate.services.webhooks`, as the REST API's do (view:
``email_configurations:view``; changes: ``email_configurations:manage``). A generated
signing secret is shown once, in the answer to the creation or the rotation only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from mailgate.domain.roles import Permission
from mailgate.domain.webhooks import WebhookEvent
from mailgate.errors import NotFound, RequestError
from mailgate.services import webhooks as webhook_svc
from mailgate.web.ui.forms import field_messages
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(prefix="/t/{tenant}/webhooks", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_CONFIGURATIONS))]
Manager = Annotated[Page, Depends(page(Permission.MANAGE_EMAIL_CONFIGURATIONS))]
EVENTS = [e.value for e in WebhookEvent]
DELIVERY_PAGE = 50


async def _list_page(
    current: Page,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    secret: str | None = None,
) -> Response:
    return render(
        current.request,
        "webhooks.html",
        current=current,
        status=status,
        webhooks=await webhook_svc.list_webhooks(current.ctx, current.caller),
        events=EVENTS,
        values=values or {"url": "", "events": [WebhookEvent.BOUNCED.value]},
        errors=errors or {},
        message=message,
        secret=secret,
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
    )


@router.get("")
async def webhooks_page(current: Viewer) -> Response:
    return await _list_page(current)


@router.post("")
async def create_webhook(current: Manager) -> Response:
    form = await current.form()
    url = form.get("url")
    chosen = [e for e in form.getlist("events") if isinstance(e, str) and e in EVENTS]
    typed_url = url.strip() if isinstance(url, str) else ""
    values: dict[str, Any] = {"url": typed_url, "events": chosen}
    try:
        created = await webhook_svc.create_webhook(
            current.ctx,
            current.caller,
            url=typed_url,
            events=[WebhookEvent(e) for e in chosen],
            secret=None,
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        errors, message = field_messages(exc)
        return await _list_page(
            current, status=exc.status, values=values, errors=errors, message=message
        )
    return await _detail_page(
        current, created.webhook.id, secret=created.generated_secret, flash="Webhook added."
    )


async def _detail_page(
    current: Page,
    webhook_id: str,
    *,
    secret: str | None = None,
    flash: str | None = None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    webhook = await webhook_svc.get_webhook(current.ctx, current.caller, webhook_id)
    deliveries = await webhook_svc.list_deliveries(
        current.ctx, current.caller, webhook_id, limit=DELIVERY_PAGE
    )
    return render(
        current.request,
        "webhook.html",
        current=current,
        status=status,
        webhook=webhook,
        deliveries=deliveries,
        secret=secret,
        note=flash,
        error=error,
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
    )


@router.get("/{webhook_id}")
async def webhook_page(webhook_id: str, current: Viewer) -> Response:
    return await _detail_page(current, webhook_id)


@router.post("/{webhook_id}/rotate")
async def rotate(webhook_id: str, current: Manager) -> Response:
    form = await current.form()
    raw = form.get("overlap_hours")
    text = raw.strip() if isinstance(raw, str) else ""
    try:
        hours = float(text or "0")
        rotated = await webhook_svc.rotate_secret(
            current.ctx, current.caller, webhook_id, overlap=timedelta(hours=hours)
        )
    except ValueError:
        return await _detail_page(
            current, webhook_id, status=422, error="Overlap (hours) must be a number."
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        by_field, message = field_messages(exc)
        rule = by_field.get("overlap_hours")
        error = f"Overlap (hours) {rule}" if rule else message
        return await _detail_page(current, webhook_id, status=exc.status, error=error)
    return await _detail_page(
        current, webhook_id, secret=rotated.secret, flash="A new signing secret is in use."
    )


@router.post("/{webhook_id}/enable")
async def enable(webhook_id: str, current: Manager) -> Response:
    await webhook_svc.enable_webhook(current.ctx, current.caller, webhook_id)
    return redirect(current.url(f"/webhooks/{webhook_id}"), flash="The webhook is active again.")


@router.get("/{webhook_id}/delete")
async def confirm_delete_webhook(webhook_id: str, current: Manager) -> Response:
    webhook = await webhook_svc.get_webhook(current.ctx, current.caller, webhook_id)
    return confirm_delete(
        current,
        question=delete_question(webhook.url),
        action=f"/webhooks/{webhook.id}/delete",
        back="/webhooks",
    )


@router.post("/{webhook_id}/delete")
async def delete(webhook_id: str, current: Manager) -> Response:
    await webhook_svc.delete_webhook(current.ctx, current.caller, webhook_id)
    return redirect(current.url("/webhooks"), flash="Webhook deleted.")


def delete_question(url: str) -> str:
    return (
        f"Are you sure you want to delete the webhook {url.split('?', 1)[0]}? "
        "Its undelivered events are dropped."
    )
