"""Webhooks: event names, the payload, the signature scheme and the retry/disable policy.

Pure values and functions (no IO). The rules, stated once:

* **Events.** Each recipient that an attempt decides about yields one event: ``message.sent``,
  ``message.deferred`` or ``message.failed``. ``message.bounced``, ``message.complained``
  and ``message.delivered`` come from bounces and reports found in inbound mail and from
  provider event webhooks; ``message.suppressed`` names a recipient left out at acceptance;
  ``message.received`` announces ordinary mail arriving in a synced inbox
  (docs/deliverability.md). An endpoint receives only the events it subscribed to.
* **Body.** Compact JSON, keys sorted, UTF-8; see :func:`event_payload`.
* **Signature.** ``X-Mailgate-Signature: sha256=<hex>`` where ``hex`` is
  HMAC-SHA256(secret, ``f"{timestamp}.".encode() + body)`` and ``timestamp`` is the value of
  ``X-Mailgate-Timestamp`` (unix seconds). Receivers recompute it over the raw body, compare
  in constant time and reject timestamps more than :data:`REPLAY_TOLERANCE_SECONDS` away from
  their clock (:func:`verify_signature`).
* **Rotation.** A new secret signs every delivery from the moment it is made. With an
  overlap, deliveries also carry ``X-Mailgate-Signature-Previous``, the same signature made
  with the previous secret, until the overlap ends (at most :data:`MAX_ROTATION_OVERLAP`),
  so receivers can switch secrets without dropping a request. ``X-Mailgate-Signature``
  keeps its one-value format throughout.
* **Retries.** A delivery that does not get a 2xx is retried with exponential backoff and
  jitter for :attr:`DeliveryPolicy.give_up` (24 h), then it fails.
* **Disabling.** An endpoint whose attempts have failed continuously (no success in between)
  for :attr:`DeliveryPolicy.disable_after` (24 h) is disabled, and its pending deliveries
  fail. Any success resets the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

#: Receivers should reject a timestamp further than this from their own clock (replays).
REPLAY_TOLERANCE_SECONDS = 300
#: How much of a receiver's response body is kept (for the delivery log), in characters.
SNIPPET_CHARS = 200
#: Total time allowed for one POST, connection and response included.
REQUEST_TIMEOUT_SECONDS = 10.0
SIGNATURE_PREFIX = "sha256="
SIGNATURE_HEADER = "X-Mailgate-Signature"
#: Sent only during a rotation's overlap: the signature made with the previous secret.
PREVIOUS_SIGNATURE_HEADER = "X-Mailgate-Signature-Previous"
#: The longest overlap a rotation may give the previous secret.
MAX_ROTATION_OVERLAP = timedelta(days=7)


class WebhookEvent(StrEnum):
    SENT = "message.sent"
    DEFERRED = "message.deferred"
    FAILED = "message.failed"
    BOUNCED = "message.bounced"
    #: A recipient left out at acceptance because its address is suppressed.
    SUPPRESSED = "message.suppressed"
    #: A recipient reported the message as spam (ARF report or provider event).
    COMPLAINED = "message.complained"
    #: The provider reported the message delivered to the recipient's server.
    DELIVERED = "message.delivered"
    #: Ordinary (non-bounce, non-report) mail arrived in a synced inbox.
    RECEIVED = "message.received"


#: The event for a recipient status decided by an attempt.
EVENT_FOR_RECIPIENT_STATUS: dict[str, WebhookEvent] = {
    "sent": WebhookEvent.SENT,
    "deferred": WebhookEvent.DEFERRED,
    "failed": WebhookEvent.FAILED,
}


class WebhookStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's endpoint, without its secret (only the fact that one is set)."""

    id: str
    tenant_id: str
    url: str
    events: tuple[WebhookEvent, ...]
    status: WebhookStatus
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    #: Until when deliveries also carry the previous secret's signature; None: no overlap.
    previous_secret_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event on its way to one endpoint (the delivery log of a webhook)."""

    id: str
    webhook_id: str
    event: str
    event_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def generate_secret() -> str:
    """A new signing secret (256 random bits, URL-safe text)."""
    return "whsec_" + secrets.token_urlsafe(32)


def event_payload(
    *,
    event_id: str,
    event: WebhookEvent,
    created_at: datetime,
    tenant: str,
    message_id: str,
    rfc_message_id: str,
    recipient: str,
    outcome: str,
    code: int | None,
    reply: str | None,
    attempt: int,
) -> dict[str, Any]:
    """The JSON object delivered for one event (docs/webhooks.md documents each field)."""
    return {
        "id": event_id,
        "type": event.value,
        "created_at": created_at.isoformat(),
        "tenant": tenant,
        "message": {"id": message_id, "message_id": rfc_message_id},
        "recipient": recipient,
        "outcome": outcome,
        "code": code,
        "reply": reply,
        "attempt": attempt,
    }


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes that are POSTed and signed."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Mailgate-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance: int = REPLAY_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: a well-formed, recent timestamp and a matching signature."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def request_headers(
    *,
    secret: str,
    event: str,
    delivery_id: str,
    timestamp: int,
    body: bytes,
    previous_secret: str | None = None,
) -> dict[str, str]:
    """Every header of a delivery request, the signature included.

    ``previous_secret`` (during a rotation's overlap) adds the previous secret's signature
    in its own header; the main signature is always the current secret's.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Mailgate-Webhooks/1",
        "X-Mailgate-Event": event,
        "X-Mailgate-Delivery": delivery_id,
        "X-Mailgate-Timestamp": str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    if previous_secret:
        headers[PREVIOUS_SIGNATURE_HEADER] = sign(previous_secret, timestamp, body)
    return headers


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """When to retry a delivery, when to give it up and when to disable an endpoint.

    Attempt ``n`` (1-based, the one that just failed) waits ``base * factor**(n-1)`` seconds,
    capped at ``cap`` and scaled by a random factor in ``[1 - jitter, 1 + jitter]``. A retry
    that would fall later than ``give_up`` after the event was recorded is not made: the
    delivery fails. An endpoint failing without a success for ``disable_after`` is disabled.
    """

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2
    give_up: timedelta = timedelta(hours=24)
    disable_after: timedelta = timedelta(hours=24)

    def next_attempt(
        self,
        *,
        created_at: datetime,
        now: datetime,
        attempts: int,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None: give up."""
        raw = min(self.base * self.factor ** max(attempts - 1, 0), self.cap)
        delay = raw * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        when = now + timedelta(seconds=delay)
        if when - created_at > self.give_up:
            return None
        return when

    def should_disable(self, failing_since: datetime | None, now: datetime) -> bool:
        """Whether an endpoint failing since ``failing_since`` has failed for too long."""
        return failing_since is not None and now - failing_since >= self.disable_after

    def disabled_reason(self, failing_since: datetime, last_error: str) -> str:
        hours = self.disable_after.total_seconds() / 3600
        return (
            f"disabled after {hours:g} h of failed deliveries (failing since "
            f"{failing_since.isoformat()}; last: {last_error}); fix the endpoint and enable it"
        )
