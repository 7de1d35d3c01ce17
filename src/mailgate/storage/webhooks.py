"""Webhook endpoints, the events recorded for them and the claim of due deliveries.

* :class:`WebhookRepo` — one tenant's endpoints; the signing secret is sealed with context
  ``"webhooks:<id>:secrets"`` (key rotation re-seals it with that context). After a secret
  rotation with an overlap the same sealed value also holds the previous secret, and
  ``previous_secret_expires_at`` says until when it still signs;
  :func:`forget_expired_previous` drops it once that time has passed.
* :func:`record_events` — called by the delivery worker *inside* the transaction that
  records attempt outcomes, so an event exists exactly when its outcome does: never lost,
  never duplicated by a crash.
* :func:`claim_due` / :func:`finish` — the dispatcher's claim (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, like the message queue) and the recording of results, endpoint health and
  disabling. A claim pushes ``next_attempt_at`` forward by a lease, so the deliveries of a
  dispatcher that dies come due again by themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.webhooks import (
    EVENT_FOR_RECIPIENT_STATUS,
    DeliveryPolicy,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
    event_payload,
)
from mailgate.errors import NotFound
from mailgate.storage import audit
from mailgate.storage.base import Tx, as_utc, utcnow
from mailgate.storage.queue import Completion
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.tables import messages, tenants, webhook_deliveries, webhooks

wd = webhook_deliveries
SYSTEM_ACTOR = "mailgate:webhooks"


def secret_context(webhook_id: str) -> str:
    return f"webhooks:{webhook_id}:secrets"


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        events=tuple(WebhookEvent(e) for e in row.events),
        status=WebhookStatus(row.status),
        disabled_reason=row.disabled_reason,
        failing_since=as_utc(row.failing_since),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        previous_secret_expires_at=as_utc(row.previous_secret_expires_at),
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event=row.event,
        event_id=str((row.payload or {}).get("id", "")),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=as_utc(row.next_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        delivered_at=as_utc(row.delivered_at),
    )


class WebhookRepo:
    """The webhook endpoints of one tenant; other tenants' rows are invisible (404)."""

    def __init__(self, tx: Tx, box: SecretBox, tenant_id: str) -> None:
        self.tx = tx
        self.box = box
        self.tenant_id = tenant_id

    def _mine(self, webhook_id: str) -> Any:
        return and_(webhooks.c.tenant_id == self.tenant_id, webhooks.c.id == webhook_id)

    async def all(self) -> list[Webhook]:
        query = select(webhooks).where(webhooks.c.tenant_id == self.tenant_id)
        return [_webhook(r) for r in await self.tx.execute(query.order_by(webhooks.c.id))]

    async def get(self, webhook_id: str) -> Webhook:
        row = (await self.tx.execute(select(webhooks).where(self._mine(webhook_id)))).first()
        if row is None:
            raise NotFound(f"No webhook {webhook_id!r}.")
        return _webhook(row)

    async def create(self, *, url: str, events: Sequence[WebhookEvent], secret: str) -> str:
        webhook_id = new_id()
        now = utcnow()
        await self.tx.execute(
            insert(webhooks).values(
                id=webhook_id,
                tenant_id=self.tenant_id,
                url=url,
                events=[e.value for e in events],
                status=WebhookStatus.ACTIVE.value,
                secrets=self.box.seal_fields(
                    {"secret": secret}, context=secret_context(webhook_id)
                ),
                created_at=now,
                updated_at=now,
            )
        )
        return webhook_id

    async def delete(self, webhook_id: str) -> None:
        """Delete the endpoint; its deliveries go with it (foreign key cascade)."""
        await self.tx.execute(delete(wd).where(wd.c.webhook_id == webhook_id))
        await self.tx.execute(delete(webhooks).where(self._mine(webhook_id)))

    async def enable(self, webhook_id: str) -> None:
        """Make the endpoint active again with a fresh failure clock."""
        await self.tx.execute(
            update(webhooks)
            .where(self._mine(webhook_id))
            .values(
                status=WebhookStatus.ACTIVE.value,
                disabled_reason=None,
                failing_since=None,
                updated_at=utcnow(),
            )
        )

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[WebhookEvent] | None = None,
    ) -> None:
        """Change the URL and/or the events; a new URL starts with a fresh failure clock."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if url is not None:
            values.update(url=url, failing_since=None)
        if events is not None:
            values["events"] = [e.value for e in events]
        await self.tx.execute(update(webhooks).where(self._mine(webhook_id)).values(**values))

    async def disable(self, webhook_id: str, *, reason: str) -> None:
        """Disable the endpoint by hand: no new events, and its pending deliveries fail."""
        await self.tx.execute(
            update(webhooks)
            .where(self._mine(webhook_id))
            .values(
                status=WebhookStatus.DISABLED.value, disabled_reason=reason, updated_at=utcnow()
            )
        )
        await _fail_pending(self.tx, webhook_id)

    async def rotate_secret(
        self, webhook_id: str, *, secret: str, previous_until: datetime | None
    ) -> None:
        """Make ``secret`` the signing secret. With ``previous_until``, the secret it replaces
        keeps signing (in the second header) until then; an older previous one is dropped."""
        context = secret_context(webhook_id)
        row = (
            await self.tx.execute(select(webhooks.c.secrets).where(self._mine(webhook_id)))
        ).first()
        if row is None:
            raise NotFound(f"No webhook {webhook_id!r}.")
        fields = {"secret": secret}
        if previous_until is not None:
            fields["previous"] = self.box.open_fields(row.secrets, context=context)["secret"]
        await self.tx.execute(
            update(webhooks)
            .where(self._mine(webhook_id))
            .values(
                secrets=self.box.seal_fields(fields, context=context),
                previous_secret_expires_at=previous_until,
                updated_at=utcnow(),
            )
        )

    async def deliveries(self, webhook_id: str, *, limit: int) -> list[WebhookDelivery]:
        """The endpoint's most recent deliveries, newest first."""
        query = select(wd).where(wd.c.webhook_id == webhook_id).order_by(wd.c.id.desc())
        return [_delivery(r) for r in await self.tx.execute(query.limit(limit))]


async def _lookup(tx: Tx, column: Any, key: Any, ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        rows = await tx.execute(select(key, column).where(key.in_(ids[start : start + 500])))
        found.update({row[0]: row[1] for row in rows})
    return found


async def record_events(
    tx: Tx, completions: Sequence[Completion], *, now: datetime | None = None
) -> int:
    """Record one event per recipient decided by each completion; return the deliveries made.

    Only active endpoints of the message's tenant subscribed to the event get a delivery.
    Call it in the transaction that calls :func:`mailgate.storage.queue.finish` for the
    same completions. Costs one query when no tenant involved has an endpoint.
    """
    decided = [c for c in completions if c.recipients]
    if not decided:
        return 0
    tenant_ids = sorted({c.job.tenant_id for c in decided})
    hooks: dict[str, list[tuple[str, frozenset[str]]]] = {}
    rows = await tx.execute(
        select(webhooks.c.id, webhooks.c.tenant_id, webhooks.c.events).where(
            webhooks.c.tenant_id.in_(tenant_ids),
            webhooks.c.status == WebhookStatus.ACTIVE.value,
        )
    )
    for hook_id, tenant_id, events in rows:
        hooks.setdefault(tenant_id, []).append((hook_id, frozenset(events)))
    decided = [c for c in decided if c.job.tenant_id in hooks]
    if not decided:
        return 0
    now = now or utcnow()
    rfc_ids = await _lookup(
        tx, messages.c.message_id, messages.c.id, sorted({c.job.id for c in decided})
    )
    slugs = await _lookup(tx, tenants.c.slug, tenants.c.id, sorted(hooks))
    out: list[dict[str, Any]] = []
    for c in decided:
        emails = dict(c.job.recipients)
        for update_ in c.recipients:
            event = EVENT_FOR_RECIPIENT_STATUS.get(update_.status.value)
            subscribers = [h for h, events in hooks[c.job.tenant_id] if event in events]
            if event is None or not subscribers or update_.position not in emails:
                continue
            payload = event_payload(
                event_id=new_id(),
                event=event,
                created_at=now,
                tenant=slugs.get(c.job.tenant_id, c.job.tenant_id),
                message_id=c.job.id,
                rfc_message_id=rfc_ids.get(c.job.id, ""),
                recipient=emails[update_.position],
                outcome=update_.status.value,
                code=update_.code,
                reply=update_.reply[:2000],
                attempt=c.job.attempt,
            )
            out += [
                {
                    "id": new_id(),
                    "webhook_id": hook_id,
                    "event": event.value,
                    "payload": payload,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for hook_id in subscribers
            ]
    if out:
        await tx.execute(insert(wd), out)
    return len(out)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery with what posting it needs; ``secret`` is kept out of reprs."""

    id: str
    webhook_id: str
    url: str
    event: str
    payload: dict[str, Any]
    attempts: int  # including the attempt being made
    created_at: datetime
    secret: str = field(repr=False)
    #: The previous secret while a rotation's overlap lasts, else None.
    previous_secret: str | None = field(default=None, repr=False)


async def claim_due(
    tx: Tx, box: SecretBox, *, limit: int, now: datetime, lease: timedelta
) -> list[DueDelivery]:
    """Claim up to ``limit`` due deliveries of active endpoints for ``lease``."""
    active = select(webhooks.c.id).where(webhooks.c.status == WebhookStatus.ACTIVE.value)
    candidates = (
        select(wd.c.id)
        .where(
            wd.c.status == DeliveryStatus.PENDING.value,
            wd.c.next_attempt_at <= now,
            wd.c.webhook_id.in_(active.scalar_subquery()),
        )
        .order_by(wd.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        await tx.execute(
            update(wd)
            .where(wd.c.id.in_(candidates.scalar_subquery()))
            .values(next_attempt_at=now + lease, attempts=wd.c.attempts + 1)
            .returning(
                wd.c.id, wd.c.webhook_id, wd.c.event, wd.c.payload, wd.c.attempts, wd.c.created_at
            )
        )
    ).all()
    if not claimed:
        return []
    hook_ids = sorted({r.webhook_id for r in claimed})
    hooks: dict[str, tuple[str, str, str | None]] = {}
    for r in await tx.execute(
        select(
            webhooks.c.id,
            webhooks.c.url,
            webhooks.c.secrets,
            webhooks.c.previous_secret_expires_at,
        ).where(webhooks.c.id.in_(hook_ids))
    ):
        fields = box.open_fields(r.secrets, context=secret_context(r.id))
        until = as_utc(r.previous_secret_expires_at)
        previous = fields.get("previous") if until is not None and now < until else None
        hooks[r.id] = (r.url, fields["secret"], previous)
    return [
        DueDelivery(
            id=r.id,
            webhook_id=r.webhook_id,
            url=hooks[r.webhook_id][0],
            event=r.event,
            payload=dict(r.payload),
            attempts=r.attempts,
            created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            secret=hooks[r.webhook_id][1],
            previous_secret=hooks[r.webhook_id][2],
        )
        for r in sorted(claimed, key=lambda r: r.id)
    ]


async def forget_expired_previous(tx: Tx, box: SecretBox, *, now: datetime) -> int:
    """Drop the previous secrets whose overlap has ended (re-sealing the current one alone);
    return how many endpoints changed."""
    rows = (
        await tx.execute(
            select(webhooks.c.id, webhooks.c.secrets).where(
                webhooks.c.previous_secret_expires_at <= now
            )
        )
    ).all()
    for row in rows:
        context = secret_context(row.id)
        current = box.open_fields(row.secrets, context=context)["secret"]
        await tx.execute(
            update(webhooks)
            .where(webhooks.c.id == row.id)
            .values(
                secrets=box.seal_fields({"secret": current}, context=context),
                previous_secret_expires_at=None,
            )
        )
    return len(rows)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """The decided result of one attempt: delivered, retry at ``next_attempt_at``, or failed."""

    delivery_id: str
    webhook_id: str
    delivered: bool
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None


_FINISH = (
    update(wd)
    # A delivery failed meanwhile (its endpoint was disabled) stays failed.
    .where(wd.c.id == bindparam("b_id"), wd.c.status == DeliveryStatus.PENDING.value)
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next"),
        last_status=bindparam("b_code"),
        last_error=bindparam("b_error"),
        delivered_at=bindparam("b_delivered"),
    )
)


async def finish(
    tx: Tx, outcomes: Sequence[AttemptOutcome], *, now: datetime, policy: DeliveryPolicy
) -> list[str]:
    """Record attempt outcomes and endpoint health; return the ids of endpoints disabled.

    A success clears the endpoint's ``failing_since``; a failure sets it when unset. An
    endpoint whose ``failing_since`` is ``policy.disable_after`` old is disabled (with its
    reason, and an audit entry), and its pending deliveries fail.
    """
    if not outcomes:
        return []
    rows = []
    for o in outcomes:
        if o.delivered:
            status = DeliveryStatus.DELIVERED
        elif o.next_attempt_at is None:
            status = DeliveryStatus.FAILED
        else:
            status = DeliveryStatus.PENDING
        rows.append(
            {
                "b_id": o.delivery_id,
                "b_status": status.value,
                "b_next": o.next_attempt_at if status is DeliveryStatus.PENDING else None,
                "b_code": o.status_code,
                "b_error": o.error,
                "b_delivered": now if o.delivered else None,
            }
        )
    await tx.execute(_FINISH, rows)
    healthy = sorted({o.webhook_id for o in outcomes if o.delivered})
    last_error = {o.webhook_id: o.error or "" for o in outcomes if not o.delivered}
    failing = sorted(set(last_error) - set(healthy))
    if healthy:
        await tx.execute(
            update(webhooks).where(webhooks.c.id.in_(healthy)).values(failing_since=None)
        )
    if not failing:
        return []
    await tx.execute(
        update(webhooks)
        .where(webhooks.c.id.in_(failing), webhooks.c.failing_since.is_(None))
        .values(failing_since=now)
    )
    disabled: list[str] = []
    candidates = await tx.execute(
        select(webhooks.c.id, webhooks.c.tenant_id, webhooks.c.url, webhooks.c.failing_since).where(
            webhooks.c.id.in_(failing), webhooks.c.status == WebhookStatus.ACTIVE.value
        )
    )
    for hook in candidates.all():
        since = as_utc(hook.failing_since)
        if since is None or not policy.should_disable(since, now):
            continue
        reason = policy.disabled_reason(since, last_error[hook.id])
        await _disable(tx, hook.id, hook.tenant_id, hook.url, reason)
        disabled.append(hook.id)
    return disabled


async def _disable(tx: Tx, hook_id: str, tenant_id: str, url: str, reason: str) -> None:
    await tx.execute(
        update(webhooks)
        .where(webhooks.c.id == hook_id)
        .values(status=WebhookStatus.DISABLED.value, disabled_reason=reason, updated_at=utcnow())
    )
    await _fail_pending(tx, hook_id)
    await audit.record(
        tx,
        tenant_id=tenant_id,
        actor=SYSTEM_ACTOR,
        action="webhook.disable",
        object_type="webhook",
        object_id=hook_id,
        object_name=url[:320],
        changes=["status", "disabled_reason"],
    )


async def _fail_pending(tx: Tx, hook_id: str) -> None:
    await tx.execute(
        update(wd)
        .where(wd.c.webhook_id == hook_id, wd.c.status == DeliveryStatus.PENDING.value)
        .values(
            status=DeliveryStatus.FAILED.value,
            next_attempt_at=None,
            last_error="the endpoint was disabled",
        )
    )
