"""Complaint matching: an ARF feedback report found in an inbox, applied to the message.

The report's original Message-ID is looked up within the account's tenant. The complaining
recipients are those the report names that are recipients of that message; a report that
names none (providers redact the address) counts against the message's only recipient
when it has exactly one. Each becomes ``complained``, is suppressed (reason
``complaint``), and a ``message.complained`` event is recorded; a report read twice
changes nothing (:mod:`mailgate.storage.recipient_events`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.inbound import Complaint, InboundMessage
from mailgate.domain.suppression import Reason, Source
from mailgate.domain.webhooks import WebhookEvent
from mailgate.storage.base import Tx
from mailgate.storage.recipient_events import (
    RecipientEvent,
    apply_events,
    find_message,
    recipients_of,
)

COMPLAINT_ENGINE = "imap"
#: A complaint is taken from these statuses (a recipient that was never sent to cannot
#: complain; one that bounced may still have been delivered a copy).
_FROM = frozenset({RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.BOUNCED})


def complaint_json(complaint: Complaint, applied: list[str]) -> dict[str, Any]:
    return {
        "feedback_type": complaint.feedback_type,
        "original_message_id": complaint.original_message_id,
        "recipients": list(complaint.recipients),
        "user_agent": complaint.user_agent,
        "reporting_mta": complaint.reporting_mta,
        "source_ip": complaint.source_ip,
        "applied": applied,
    }


async def apply_complaint(
    tx: Tx, tenant_id: str, inbound: InboundMessage, complaint: Complaint, *, now: datetime
) -> tuple[str | None, list[str]]:
    """Apply ``complaint``; the matched message's id (None: none of this tenant) and the
    recipients marked ``complained``."""
    if not complaint.original_message_id:
        return None, []
    message = await find_message(tx, tenant_id, rfc_message_id=complaint.original_message_id)
    if message is None:
        return None, []
    if not complaint.is_complaint:
        return message.id, []
    held = await recipients_of(tx, message.id)
    named = [r for r in complaint.recipients if r.lower() in held]
    if not named:
        candidates = [
            e for e, (_, status) in held.items() if status is not RecipientStatus.SUPPRESSED
        ]
        named = candidates if len(candidates) == 1 else []
    detail = {
        "feedback_type": complaint.feedback_type,
        "user_agent": complaint.user_agent,
        "reporting_mta": complaint.reporting_mta,
        "format": "arf",
    }
    events = [
        RecipientEvent(
            email=email,
            status=RecipientStatus.COMPLAINED,
            from_statuses=_FROM,
            webhook=WebhookEvent.COMPLAINED,
            suppress=Reason.COMPLAINT,
            reply=f"complaint ({complaint.feedback_type})",
            details_key="complaint",
            details=detail,
        )
        for email in named
    ]
    transcript = [
        f"complaint (arf, {complaint.feedback_type}) received {now.isoformat(timespec='seconds')}",
        f"inbound message: {inbound.message_id or '(no Message-ID)'} from {inbound.sender}",
    ]
    if complaint.user_agent:
        transcript.append(f"reported by: {complaint.user_agent}")
    done = await apply_events(
        tx,
        message,
        events,
        engine=COMPLAINT_ENGINE,
        source=Source.COMPLAINT,
        transcript=transcript,
        now=now,
    )
    return message.id, [e.email for e, ok in zip(events, done, strict=True) if ok]
