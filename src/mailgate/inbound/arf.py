"""Reading complaints: ARF feedback reports (RFC 5965) found in an inbox.

A report is ``multipart/report; report-type=feedback-report`` with three parts: a
human-readable explanation, a ``message/feedback-report`` part of header-like fields
(``Feedback-Type``, ``User-Agent``, ``Version``, optional ``Original-Rcpt-To``,
``Reporting-MTA``, ``Source-IP``...) and the returned message or its header
(``message/rfc822``, ``text/rfc822-headers``), whose Message-ID names the message
complained about. Mailbox providers often redact the complaining address; the returned
To and Cc fields are read when ``Original-Rcpt-To`` is absent.

Pure functions over :class:`email.message.Message`; no IO.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from email.message import Message

from mailgate.domain.inbound import Complaint
from mailgate.inbound.dsn import normalise_message_id

_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
)
#: Recipients read from one report at most.
MAX_COMPLAINT_RECIPIENTS = 100
_FIELD_CHARS = 255


def _clean(value: object, limit: int = _FIELD_CHARS) -> str | None:
    if value is None:
        return None
    flat = " ".join(str(value).replace("\x00", " ").split())
    return flat[:limit] or None


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _fields(part: Message) -> Message:
    """The report's fields: the ``email`` package parses ``message/feedback-report`` as a
    message whose header block is the fields (or leaves the text, which is parsed here)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    return parser.parsestr(_payload_text(part).strip() + "\n")


def _original(message: Message) -> Message | None:
    """The returned message (or its header block)."""
    for part in message.walk():
        if part.get_content_type() not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        parser = email.parser.HeaderParser(policy=email.policy.compat32)
        return parser.parsestr(_payload_text(part))
    return None


def _addresses(values: list[str]) -> list[str]:
    out: list[str] = []
    for _, address in email.utils.getaddresses([str(v) for v in values]):
        address = address.strip().strip("<>").lower()
        if "@" in address and address not in out and len(address) <= 320:
            out.append(address)
        if len(out) >= MAX_COMPLAINT_RECIPIENTS:
            break
    return out


def parse_complaint(message: Message) -> Complaint | None:
    """The complaint ``message`` reports, or None when it is no ARF report."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "") or "").lower() != "feedback-report":
        return None
    report: Message | None = None
    for part in message.walk():
        if part.get_content_type() in _FEEDBACK_TYPES:
            report = _fields(part)
            break
    if report is None:
        return None
    feedback_type = (_clean(report.get("Feedback-Type"), 40) or "other").lower()
    original = _original(message)
    recipients = _addresses(report.get_all("Original-Rcpt-To") or [])
    if not recipients and original is not None:
        recipients = _addresses([*(original.get_all("To") or []), *(original.get_all("Cc") or [])])
    reporting = _clean(report.get("Reporting-MTA"))
    return Complaint(
        feedback_type=feedback_type,
        original_message_id=(
            normalise_message_id(_clean(original.get("Message-ID"), 500))
            if original is not None
            else None
        ),
        recipients=tuple(recipients),
        user_agent=_clean(report.get("User-Agent")),
        reporting_mta=reporting.partition(";")[2].strip() or reporting if reporting else None,
        source_ip=_clean(report.get("Source-IP"), 64),
    )
