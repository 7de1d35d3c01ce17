"""Request and response bodies of webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mailgate.domain.webhooks import MAX_ROTATION_OVERLAP, Webhook, WebhookDelivery
from mailgate.web.api.schemas import Strict

# Webhooks -------------------------------------------------------------------------------

WebhookEventName = Literal[
    "message.sent",
    "message.deferred",
    "message.failed",
    "message.bounced",
    "message.suppressed",
    "message.complained",
    "message.delivered",
    "message.received",
]


class WebhookIn(Strict):
    url: str = Field(min_length=1, max_length=2000)
    events: list[WebhookEventName] = Field(min_length=1)
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Write-only signing secret; omitted: Mailgate generates one.",
    )


class WebhookPatch(Strict):
    """Fields left out are unchanged; the secret is changed only by ``rotate-secret``."""

    url: str | None = Field(None, min_length=1, max_length=2000)
    events: list[WebhookEventName] | None = Field(None, min_length=1)
    active: bool | None = Field(
        None, description="false disables the endpoint; true re-enables it (URL checked again)."
    )


class WebhookRotateIn(Strict):
    overlap_hours: float = Field(
        0,
        ge=0,
        le=MAX_ROTATION_OVERLAP.total_seconds() / 3600,
        description="How long deliveries also carry the previous secret's signature "
        "(X-Mailgate-Signature-Previous); 0: the previous secret stops signing at once.",
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    status: Literal["active", "disabled"]
    secret_set: bool = True
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        None, description="Until when deliveries also carry the previous secret's signature."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, w: Webhook) -> WebhookOut:
        return cls(
            id=w.id,
            url=w.url,
            events=[e.value for e in w.events],
            status="active" if w.status.value == "active" else "disabled",
            disabled_reason=w.disabled_reason,
            failing_since=w.failing_since,
            previous_secret_expires_at=w.previous_secret_expires_at,
            created_at=w.created_at,
            updated_at=w.updated_at,
        )


class WebhookCreated(WebhookOut):
    secret: str | None = Field(
        None, description="The generated secret, shown only here; null when one was given."
    )


class WebhookRotated(WebhookOut):
    secret: str = Field(description="The new signing secret, shown only here.")


class WebhookDeliveryOut(BaseModel):
    id: str
    event: str
    event_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: WebhookDelivery) -> WebhookDeliveryOut:
        return cls(
            id=d.id,
            event=d.event,
            event_id=d.event_id,
            status=d.status.value,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status=d.last_status,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )
