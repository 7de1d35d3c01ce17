"""Webhook endpoints of a tenant: create, list, read, delete, enable, delivery log.

Rules applied here:

* the URL is ``https`` (``http`` only for destinations the instance allow-list names), has no
  user-info or fragment, and passes the network policy when it is saved — a refusal is a 422
  naming ``url`` with the policy's generic message, which does not say what the host
  resolved to. The dispatcher checks again at every delivery;
* the signing secret is write-only: given, it is sealed and never shown; omitted, one is
  generated and returned once, by the create call only;
* every change is audited without the secret or the URL's query string.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from mailgate.domain.webhooks import Webhook, WebhookDelivery, WebhookEvent, generate_secret
from mailgate.engines.guarded_dialer import SystemResolver
from mailgate.engines.netpolicy import NetworkPolicy, Resolver
from mailgate.engines.webhook_http import check_destination, parse_url
from mailgate.errors import PolicyViolation, ValidationFailed
from mailgate.services.context import Caller, Context
from mailgate.storage import audit
from mailgate.storage.webhooks import WebhookRepo

MIN_SECRET_LENGTH = 16


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A new endpoint and, when Mailgate generated it, its secret (to show once)."""

    webhook: Webhook
    generated_secret: str | None


def _audit_name(url: str) -> str:
    # The query string may carry a receiver's token: the audit log names the endpoint only.
    return url.split("?", 1)[0][:320]


async def check_url(ctx: Context, url: str, *, resolver: Resolver | None = None) -> None:
    """Refuse ``url`` (422 naming ``url``) unless it may be used as a webhook right now."""
    try:
        target = parse_url(url)
    except ValueError as exc:
        raise ValidationFailed.field("url", str(exc)) from exc
    policy = NetworkPolicy(ctx.policy.allowed_networks, allow_port_25=ctx.policy.allow_port_25)
    try:
        await check_destination(
            target,
            policy=policy,
            allowed=ctx.policy.allowed_networks,
            resolver=resolver or SystemResolver(),
        )
    except PolicyViolation as exc:
        raise ValidationFailed.field("url", str(exc)) from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationFailed.field("url", "the host name could not be resolved") from exc


async def list_webhooks(ctx: Context, caller: Caller) -> list[Webhook]:
    async with ctx.db.read() as tx:
        return await WebhookRepo(tx, ctx.box, caller.tenant_id).all()


async def get_webhook(ctx: Context, caller: Caller, webhook_id: str) -> Webhook:
    async with ctx.db.read() as tx:
        return await WebhookRepo(tx, ctx.box, caller.tenant_id).get(webhook_id)


async def create_webhook(
    ctx: Context,
    caller: Caller,
    *,
    url: str,
    events: Sequence[WebhookEvent],
    secret: str | None,
    resolver: Resolver | None = None,
) -> CreatedWebhook:
    """Create an active endpoint subscribed to ``events`` (duplicates dropped, order kept)."""
    if not events:
        raise ValidationFailed.field("events", "name at least one event")
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ValidationFailed.field(
            "secret", f"must be at least {MIN_SECRET_LENGTH} characters (or omit it)"
        )
    await check_url(ctx, url, resolver=resolver)
    generated = generate_secret() if secret is None else None
    unique = tuple(dict.fromkeys(events))
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        webhook_id = await repo.create(url=url, events=unique, secret=secret or generated or "")
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="webhook.create",
            object_type="webhook",
            object_id=webhook_id,
            object_name=_audit_name(url),
            changes=["url", "events", "secret"],
        )
        return CreatedWebhook(await repo.get(webhook_id), generated)


async def delete_webhook(ctx: Context, caller: Caller, webhook_id: str) -> None:
    """Delete an endpoint and its pending deliveries."""
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        webhook = await repo.get(webhook_id)
        await repo.delete(webhook_id)
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="webhook.delete",
            object_type="webhook",
            object_id=webhook_id,
            object_name=_audit_name(webhook.url),
        )


async def enable_webhook(
    ctx: Context, caller: Caller, webhook_id: str, *, resolver: Resolver | None = None
) -> Webhook:
    """Re-enable a (disabled) endpoint after its URL passes the policy again.

    Deliveries that failed while it was disabled stay failed; new events are delivered.
    """
    async with ctx.db.read() as tx:
        webhook = await WebhookRepo(tx, ctx.box, caller.tenant_id).get(webhook_id)
    await check_url(ctx, webhook.url, resolver=resolver)
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        await repo.get(webhook_id)
        await repo.enable(webhook_id)
        await audit.record(
            tx,
            tenant_id=caller.tenant_id,
            actor=caller.actor,
            action="webhook.enable",
            object_type="webhook",
            object_id=webhook_id,
            object_name=_audit_name(webhook.url),
            changes=["status"],
        )
        return await repo.get(webhook_id)


async def list_deliveries(
    ctx: Context, caller: Caller, webhook_id: str, *, limit: int
) -> list[WebhookDelivery]:
    """The endpoint's most recent deliveries, newest first (404 for another tenant's)."""
    async with ctx.db.read() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        await repo.get(webhook_id)
        return await repo.deliveries(webhook_id, limit=limit)
