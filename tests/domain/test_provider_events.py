"""The SendGrid event table: one row per event kind (docs/deliverability.md)."""

from __future__ import annotations

from typing import Any

import pytest

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.provider_events import read_events, sendgrid_change
from mailgate.domain.suppression import Reason
from mailgate.domain.webhooks import WebhookEvent

SENT, DELIVERED = RecipientStatus.SENT, RecipientStatus.DELIVERED


def _one(**fields: Any) -> Any:
    base = {"email": "A@X.test", "sg_event_id": "ev1", "sg_message_id": "abc.filter0001.1.0"}
    [event] = read_events([{**base, **fields}])
    return event


@pytest.mark.parametrize(
    ("fields", "status", "webhook", "suppress"),
    [
        ({"event": "delivered"}, RecipientStatus.DELIVERED, WebhookEvent.DELIVERED, None),
        ({"event": "deferred"}, None, WebhookEvent.DEFERRED, None),
        (
            {"event": "bounce", "type": "bounce"},
            RecipientStatus.BOUNCED,
            WebhookEvent.BOUNCED,
            Reason.HARD_BOUNCE,
        ),
        (
            {"event": "bounce", "type": "blocked"},
            RecipientStatus.BOUNCED,
            WebhookEvent.BOUNCED,
            None,
        ),
        (
            {"event": "dropped", "reason": "Bounced Address"},
            RecipientStatus.FAILED,
            WebhookEvent.FAILED,
            Reason.HARD_BOUNCE,
        ),
        (
            {"event": "dropped", "reason": "Spam Reporting Address"},
            RecipientStatus.FAILED,
            WebhookEvent.FAILED,
            Reason.COMPLAINT,
        ),
        (
            {"event": "dropped", "reason": "Unsubscribed Address"},
            RecipientStatus.FAILED,
            WebhookEvent.FAILED,
            Reason.UNSUBSCRIBE,
        ),
        (
            {"event": "dropped", "reason": "Invalid SMTPAPI header"},
            RecipientStatus.FAILED,
            WebhookEvent.FAILED,
            None,
        ),
        (
            {"event": "spamreport"},
            RecipientStatus.COMPLAINED,
            WebhookEvent.COMPLAINED,
            Reason.COMPLAINT,
        ),
    ],
)
def test_sendgrid_event_table(
    fields: dict[str, Any],
    status: RecipientStatus | None,
    webhook: WebhookEvent,
    suppress: Reason | None,
) -> None:
    change = sendgrid_change(_one(**fields))
    assert change is not None
    assert (change.status, change.webhook, change.suppress) == (status, webhook, suppress)


@pytest.mark.parametrize("kind", ["processed", "open", "click", "group_resubscribe"])
def test_other_events_are_ignored(kind: str) -> None:
    assert sendgrid_change(_one(event=kind)) is None


def test_fields_are_read_and_bounded() -> None:
    event = _one(
        event="Bounce",
        status="5.1.1",
        reason="550 5.1.1 The email account does not exist\x00" + "x" * 5000,
        **{"smtp-id": "<m1@acme.example>"},
    )
    assert (event.event, event.email, event.remote_id) == ("bounce", "a@x.test", "abc")
    assert event.smtp_id == "<m1@acme.example>" and "\x00" not in event.reason
    assert len(event.reason) == 2000
    change = sendgrid_change(event)
    assert change is not None and change.code == 550
    assert change.reply.startswith("5.1.1 550 5.1.1 The email account")


def test_events_without_an_id_get_a_stable_digest_and_bad_bodies_are_refused() -> None:
    [a] = read_events([{"event": "delivered", "email": "a@x.test", "timestamp": 1}])
    [b] = read_events([{"timestamp": 1, "email": "a@x.test", "event": "delivered"}])
    assert a.event_id == b.event_id and a.event_id.startswith("sha256:")
    assert read_events([{"event": "delivered"}]) == []  # no address: skipped
    for bad in ({"event": "x"}, ["text"], "x"):
        with pytest.raises(ValueError, match="JSON"):
            read_events(bad)
