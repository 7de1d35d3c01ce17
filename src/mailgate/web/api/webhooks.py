"""Webhook endpoints of a tenant (docs/webhooks.md): events, signing, retries, disabling."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response

from mailgate.domain.webhooks import WebhookEvent
from mailgate.errors import ValidationFailed
from mailgate.services import webhooks as webhook_svc
from mailgate.web.api.schemas import Page
from mailgate.web.api.schemas_webhooks import (
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    WebhookRotated,
    WebhookRotateIn,
)
from mailgate.web.deps import CtxDep, Limit, ManageConfig, ViewConfig, page

router = APIRouter(prefix="/api/v1/tenants/{tenant}", tags=["webhooks"])


@router.get("/webhooks")
async def list_webhooks(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[WebhookOut]:
    """The tenant's endpoints with their status; secrets are never shown."""
    items, nxt = page(await webhook_svc.list_webhooks(ctx, who), lambda w: w.id, limit, cursor)
    return Page(items=[WebhookOut.of(w) for w in items], next_cursor=nxt)


@router.post("/webhooks", status_code=201)
async def create_webhook(body: WebhookIn, ctx: CtxDep, who: ManageConfig) -> WebhookCreated:
    """Create an endpoint. The URL must be https (http only for allow-listed hosts) and pass
    the network policy. A secret left out is generated and returned here, once."""
    created = await webhook_svc.create_webhook(
        ctx,
        who,
        url=body.url,
        events=[WebhookEvent(e) for e in body.events],
        secret=body.secret,
    )
    out = WebhookOut.of(created.webhook)
    return WebhookCreated(**out.model_dump(), secret=created.generated_secret)


@router.get("/webhooks/{webhook_id}")
async def get_webhook(webhook_id: str, ctx: CtxDep, who: ViewConfig) -> WebhookOut:
    return WebhookOut.of(await webhook_svc.get_webhook(ctx, who, webhook_id))


@router.patch("/webhooks/{webhook_id}")
async def update_webhook(
    webhook_id: str, body: WebhookPatch, ctx: CtxDep, who: ManageConfig
) -> WebhookOut:
    """Change the URL (checked like a new one), the events, or ``active``; fields left out
    are unchanged. The secret is changed only by ``rotate-secret``."""
    fields = body.model_dump(exclude_unset=True)
    for name in ("url", "events", "active"):
        if name in fields and fields[name] is None:
            raise ValidationFailed.field(name, "must not be null (leave it out to keep it)")
    updated = await webhook_svc.update_webhook(
        ctx,
        who,
        webhook_id,
        url=body.url,
        events=[WebhookEvent(e) for e in body.events] if body.events is not None else None,
        active=body.active,
    )
    return WebhookOut.of(updated)


@router.post("/webhooks/{webhook_id}/rotate-secret")
async def rotate_secret(
    webhook_id: str, ctx: CtxDep, who: ManageConfig, body: WebhookRotateIn | None = None
) -> WebhookRotated:
    """Replace the signing secret with a generated one, returned here once. With
    ``overlap_hours``, deliveries also carry the previous secret's signature in
    ``X-Mailgate-Signature-Previous`` until ``previous_secret_expires_at``."""
    overlap = timedelta(hours=body.overlap_hours if body is not None else 0)
    rotated = await webhook_svc.rotate_secret(ctx, who, webhook_id, overlap=overlap)
    out = WebhookOut.of(rotated.webhook)
    return WebhookRotated(**out.model_dump(), secret=rotated.secret)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    """Delete an endpoint; its undelivered events are dropped."""
    await webhook_svc.delete_webhook(ctx, who, webhook_id)
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/enable")
async def enable_webhook(webhook_id: str, ctx: CtxDep, who: ManageConfig) -> WebhookOut:
    """Re-enable an endpoint (after it was disabled for failing); the URL is checked again."""
    return WebhookOut.of(await webhook_svc.enable_webhook(ctx, who, webhook_id))


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str, ctx: CtxDep, who: ViewConfig, limit: Limit = 50
) -> Page[WebhookDeliveryOut]:
    """The endpoint's most recent deliveries, newest first (status, attempts, last error)."""
    items = await webhook_svc.list_deliveries(ctx, who, webhook_id, limit=limit)
    return Page(items=[WebhookDeliveryOut.of(d) for d in items])
