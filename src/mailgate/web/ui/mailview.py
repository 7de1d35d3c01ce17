"""Reading a composed message for display: headers, text body, HTML body, attachments.

Pure functions over bytes (Python's ``email`` package with the default policy). The HTML
body is returned as text only; the captured-mail viewer serves it in a sandboxed frame under
a strict Content-Security-Policy and never inserts it into a page of its own.
"""

from __future__ import annotations

import email
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class MailView:
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    message_id: str
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)


def _content(part: EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        value = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return value if isinstance(value, str) else None


def parse(data: bytes) -> MailView:
    """What the viewer shows of ``data`` (an RFC 5322 message)."""
    message = email.message_from_bytes(data, _class=EmailMessage, policy=default)
    assert isinstance(message, EmailMessage)
    attachments = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        attachments.append(
            Attachment(
                filename=part.get_filename() or "(no name)",
                content_type=part.get_content_type(),
                size=len(payload) if isinstance(payload, bytes) else 0,
            )
        )
    return MailView(
        subject=str(message.get("Subject", "")),
        sender=str(message.get("From", "")),
        to=str(message.get("To", "")),
        cc=str(message.get("Cc", "")),
        date=str(message.get("Date", "")),
        message_id=str(message.get("Message-ID", "")),
        text=_content(message.get_body(preferencelist=("plain",))),  # type: ignore[arg-type]
        html=_content(message.get_body(preferencelist=("html",))),  # type: ignore[arg-type]
        attachments=tuple(attachments),
    )
