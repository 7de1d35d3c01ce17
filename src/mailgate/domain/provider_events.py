"""Provider events: what SendGrid's Event Webhook reports about a recipient, mapped to a
recipient status, a webhook event and a suppression. Pure values and a table; no IO.

SendGrid posts a JSON array of event objects. The fields read here: ``event``, ``email``,
``sg_event_id`` (unique per event: a retried post repeats it), ``sg_message_id`` (its part
before the first ``.`` is the ``X-Message-Id`` that Mail Send answered, which Mailgate
keeps as the message's ``remote_id``), ``smtp-id`` (the Message-ID header), ``timestamp``,
``reason``, ``status``, ``response``, ``type`` (``bounce`` or ``blocked``) and ``attempt``.

| SendGrid ``event`` | recipient status | webhook | suppression |
| --- | --- | --- | --- |
| ``delivered`` | ``delivered`` (from ``sent``) | ``message.delivered`` | — |
| ``deferred`` | unchanged | ``message.deferred`` | — |
| ``bounce`` (``type: bounce``) | ``bounced`` | ``message.bounced`` | ``hard_bounce`` |
| ``bounce`` (``type: blocked``) | ``bounced`` | ``message.bounced`` | — |
| ``dropped`` | ``failed`` | ``message.failed`` | by ``reason`` (:data:`DROPPED_REASONS`) |
| ``spamreport`` | ``complained`` | ``message.complained`` | ``complaint`` |

Other events (``processed``, ``open``, ``click``…) are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.suppression import Reason
from mailgate.domain.webhooks import WebhookEvent

#: A post with more events than this is refused (SendGrid batches far fewer).
MAX_EVENTS_PER_POST = 10_000
_TEXT = 2000

_SENT = frozenset({RecipientStatus.SENT})
_DELIVERED_OR_SENT = frozenset({RecipientStatus.SENT, RecipientStatus.DELIVERED})

#: SendGrid's ``dropped`` reasons that mirror a suppression SendGrid itself holds.
DROPPED_REASONS: Mapping[str, Reason] = {
    "bounced address": Reason.HARD_BOUNCE,
    "spam reporting address": Reason.COMPLAINT,
    "unsubscribed address": Reason.UNSUBSCRIBE,
}


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event of a post, as read (untrusted text cut to size)."""

    event_id: str
    event: str
    email: str
    remote_id: str | None
    smtp_id: str | None
    timestamp: int | None
    reason: str
    status: str | None
    bounce_type: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """What one event does to its recipient."""

    status: RecipientStatus | None
    from_statuses: frozenset[RecipientStatus]
    webhook: WebhookEvent
    suppress: Reason | None
    code: int | None
    reply: str


def _text(value: Any, limit: int = _TEXT) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return " ".join(str(value).replace("\x00", " ").split())[:limit]


def _event_id(item: Mapping[str, Any]) -> str:
    """``sg_event_id``; without one, a digest of the event (so a retry still matches)."""
    given = _text(item.get("sg_event_id"), 100)
    if given:
        return given
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:64]


def _code(status: str | None, response: str) -> int | None:
    for text in (response, status or ""):
        for word in text.replace("-", " ").split():
            if len(word) == 3 and word.isdigit() and word[0] in "245":
                return int(word)
    return None


def read_events(data: Any) -> list[ProviderEvent]:
    """The events of a decoded post body; raises ValueError when it is not a JSON array
    of objects (or holds too many). Objects without ``event`` or ``email`` are skipped."""
    if not isinstance(data, list):
        raise ValueError("the body must be a JSON array of event objects")
    if len(data) > MAX_EVENTS_PER_POST:
        raise ValueError(f"at most {MAX_EVENTS_PER_POST} events per post")
    out: list[ProviderEvent] = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("every element must be a JSON object")
        event, email = _text(item.get("event"), 40).lower(), _text(item.get("email"), 320)
        if not event or "@" not in email:
            continue
        sg_message_id = _text(item.get("sg_message_id"), 300)
        timestamp = item.get("timestamp")
        out.append(
            ProviderEvent(
                event_id=_event_id(item),
                event=event,
                email=email.lower(),
                remote_id=sg_message_id.split(".", 1)[0] or None,
                smtp_id=_text(item.get("smtp-id"), 500) or None,
                timestamp=timestamp if isinstance(timestamp, int) else None,
                reason=_text(item.get("reason") or item.get("response")),
                status=_text(item.get("status"), 20) or None,
                bounce_type=_text(item.get("type"), 20).lower() or None,
                raw=item,
            )
        )
    return out


def sendgrid_change(event: ProviderEvent) -> Change | None:
    """What ``event`` does (the table above); None for events Mailgate ignores."""
    code = _code(event.status, event.reason)
    reply = " ".join(p for p in (event.status or "", event.reason) if p)[:_TEXT]
    if event.event == "delivered":
        return Change(RecipientStatus.DELIVERED, _SENT, WebhookEvent.DELIVERED, None, code, reply)
    if event.event == "deferred":
        return Change(None, frozenset(), WebhookEvent.DEFERRED, None, code, reply)
    if event.event == "bounce":
        blocked = event.bounce_type == "blocked"
        return Change(
            RecipientStatus.BOUNCED,
            _DELIVERED_OR_SENT,
            WebhookEvent.BOUNCED,
            None if blocked else Reason.HARD_BOUNCE,
            code,
            reply,
        )
    if event.event == "dropped":
        return Change(
            RecipientStatus.FAILED,
            _SENT,
            WebhookEvent.FAILED,
            DROPPED_REASONS.get(event.reason.strip().lower()),
            code,
            reply or "dropped by SendGrid",
        )
    if event.event == "spamreport":
        return Change(
            RecipientStatus.COMPLAINED,
            _DELIVERED_OR_SENT,
            WebhookEvent.COMPLAINED,
            Reason.COMPLAINT,
            None,
            reply or "reported as spam",
        )
    return None
