"""Webhook endpoints of a tenant: create, list, read, edit, rotate the secret, delete,
enable, delivery log.

Rules applied here:

* the URL is ``https`` (``http`` only for destinations the instance allow-list names), has no
  user-info or fragment, and passes the network policy when it is saved — a refusal is a 422
  naming ``url`` with the policy's generic message, which does not say what the host
  resolved to. The dispatcher checks again at every delivery;
* the signing secret is write-only: given, it is sealed and never shown; omitted, one is
  generated and returned once, by the create call only. A rotation generates the new
  secret and returns it once, by the rotate call only; with an overlap the previous secret
  keeps signing deliveries (in a second header) until the overlap ends;
* an edited URL passes the same checks as a new one; editing never touches the secret;
* every change is audited without the secret or the URL's query string.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from mailgate.domain.webhooks import (
    MAX_ROTATION_OVERLAP,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
    generate_secret,
)
from mailgate.errors import PolicyViolation, ValidationFailed
from mailgate.net.guarded import SystemResolver
from mailgate.net.policy import NetworkPolicy, Resolver
from mailgate.net.webhook import check_destination, parse_url
from mailgate.services import audit_trail
from mailgate.services.context import Caller, Context
from mailgate.storage.base import utcnow
from mailgate.storage.webhooks import WebhookRepo

MIN_SECRET_LENGTH = 16


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A new endpoint and, when Mailgate generated it, its secret (to show once)."""

    webhook: Webhook
    generated_secret: str | None


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    """An endpoint after a secret rotation and its new secret (to show once)."""

    webhook: Webhook
    secret: str = field(repr=False)


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
        await audit_trail.record(
            tx,
            caller,
            "webhook.create",
            "webhook",
            webhook_id,
            _audit_name(url),
            ["url", "events", "secret"],
        )
        return CreatedWebhook(await repo.get(webhook_id), generated)


async def update_webhook(
    ctx: Context,
    caller: Caller,
    webhook_id: str,
    *,
    url: str | None = None,
    events: Sequence[WebhookEvent] | None = None,
    active: bool | None = None,
    resolver: Resolver | None = None,
) -> Webhook:
    """Change an endpoint's URL, events and/or whether it is active (None: unchanged).

    A changed URL passes the checks of :func:`create_webhook` and starts a fresh failure
    clock; ``active=True`` re-enables a disabled endpoint as :func:`enable_webhook` does (its
    URL is checked again); ``active=False`` disables it and fails its pending deliveries.
    Only what changes is written and audited (by field name).
    """
    if events is not None and not events:
        raise ValidationFailed.field("events", "name at least one event")
    async with ctx.db.read() as tx:
        current = await WebhookRepo(tx, ctx.box, caller.tenant_id).get(webhook_id)
    new_url = url if url is not None and url != current.url else None
    new_events = tuple(dict.fromkeys(events)) if events is not None else None
    if new_events == current.events:
        new_events = None
    enable = active is True and current.status is WebhookStatus.DISABLED
    disable = active is False and current.status is WebhookStatus.ACTIVE
    if new_url is not None or enable:
        await check_url(ctx, new_url or current.url, resolver=resolver)
    changes = [
        name
        for name, changed in (
            ("url", new_url is not None),
            ("events", new_events is not None),
            ("status", enable or disable),
        )
        if changed
    ]
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        await repo.get(webhook_id)
        if not changes:
            return await repo.get(webhook_id)
        if new_url is not None or new_events is not None:
            await repo.update(webhook_id, url=new_url, events=new_events)
        if enable:
            await repo.enable(webhook_id)
        if disable:
            await repo.disable(webhook_id, reason=f"disabled by {caller.actor}")
        await audit_trail.record(
            tx,
            caller,
            "webhook.update",
            "webhook",
            webhook_id,
            _audit_name(new_url or current.url),
            changes,
        )
        return await repo.get(webhook_id)


async def rotate_secret(
    ctx: Context, caller: Caller, webhook_id: str, *, overlap: timedelta = timedelta(0)
) -> RotatedSecret:
    """Give an endpoint a new, generated signing secret; return it (to show once).

    Deliveries are signed with the new secret from now on. With a positive ``overlap`` (at
    most :data:`~mailgate.domain.webhooks.MAX_ROTATION_OVERLAP`) they also carry the
    previous secret's signature until the overlap ends; a rotation during an overlap drops
    the secret before the previous one. Without it, the previous secret is forgotten at once.
    """
    if overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        hours = MAX_ROTATION_OVERLAP.total_seconds() / 3600
        raise ValidationFailed.field("overlap_hours", f"must be between 0 and {hours:g}")
    secret = generate_secret()
    until = utcnow() + overlap if overlap > timedelta(0) else None
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        webhook = await repo.get(webhook_id)
        await repo.rotate_secret(webhook_id, secret=secret, previous_until=until)
        await audit_trail.record(
            tx,
            caller,
            "webhook.rotate_secret",
            "webhook",
            webhook_id,
            _audit_name(webhook.url),
            ["secret", f"overlap:{overlap.total_seconds():g}s"],
        )
        return RotatedSecret(await repo.get(webhook_id), secret)


async def delete_webhook(ctx: Context, caller: Caller, webhook_id: str) -> None:
    """Delete an endpoint and its pending deliveries."""
    async with ctx.db.transaction() as tx:
        repo = WebhookRepo(tx, ctx.box, caller.tenant_id)
        webhook = await repo.get(webhook_id)
        await repo.delete(webhook_id)
        await audit_trail.record(
            tx, caller, "webhook.delete", "webhook", webhook_id, _audit_name(webhook.url)
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
        await audit_trail.record(
            tx,
            caller,
            "webhook.enable",
            "webhook",
            webhook_id,
            _audit_name(webhook.url),
            ["status"],
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
