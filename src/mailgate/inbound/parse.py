"""From fetched bytes to an :class:`InboundMessage`: the header fields a list shows, and the
bounce the message is (if any).

Header values are decoded (RFC 2047), flattened to one line (no CR, LF or NUL) and cut to
the column sizes of the store. Malformed input never raises: a field that cannot be read
is left empty.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import email.utils
from datetime import UTC, datetime
from email.message import Message

from mailgate.domain.inbound import Bounce, Complaint, InboundMessage
from mailgate.inbound.arf import parse_complaint
from mailgate.inbound.dsn import normalise_message_id, parse_bounce
from mailgate.inbound.session import FetchedMail

MESSAGE_ID_CHARS = 500
SENDER_CHARS = 400
SUBJECT_CHARS = 1000
#: Header fields kept for ``message.received`` events, and the length of each value.
MAX_HEADER_FIELDS = 100
HEADER_VALUE_CHARS = 2000


def _header(message: Message, name: str, limit: int) -> str:
    value = message.get(name)
    if value is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    return " ".join(text.replace("\x00", " ").split())[:limit]


def _date(message: Message) -> datetime | None:
    value = message.get("Date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_message(raw: bytes) -> Message:
    """The message structure of ``raw`` (lenient: the compat32 policy never raises)."""
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)


def _read(fetched: FetchedMail) -> tuple[Message, Bounce | None, Complaint | None]:
    """The message, the bounce it is and the complaint it reports. MIME parts nested
    deeper than the interpreter's recursion limit (anyone can mail such a message to the
    inbox) are not read: the message keeps its header fields and is no bounce, and the
    sync goes on past it. An ARF report (RFC 5965) is a complaint, never a bounce."""
    try:
        message = parse_message(fetched.raw)
        if fetched.truncated:
            return message, None, None
        complaint = parse_complaint(message)
        if complaint is not None:
            return message, None, complaint
        return message, parse_bounce(message), None
    except RecursionError:
        parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
        return parser.parsebytes(fetched.raw), None, None


def _headers(message: Message) -> tuple[tuple[str, str], ...]:
    """The first header fields, in order, with decoded, one-line values."""
    out: list[tuple[str, str]] = []
    for name, value in message.items()[:MAX_HEADER_FIELDS]:
        clean_name = _flat(name, 100)
        if clean_name:
            out.append((clean_name, _flat(value, HEADER_VALUE_CHARS)))
    return tuple(out)


def _flat(value: object, limit: int) -> str:
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    return " ".join(text.replace("\x00", " ").split())[:limit]


def to_inbound(fetched: FetchedMail) -> InboundMessage:
    """The stored form of one fetched message; a truncated one is never read as a bounce
    or a complaint (its body, where the report is, was not fetched)."""
    message, bounce, complaint = _read(fetched)
    message_id = normalise_message_id(_header(message, "Message-ID", MESSAGE_ID_CHARS))
    received = fetched.internal_date
    if received is not None and received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    return InboundMessage(
        uid=fetched.uid,
        message_id=message_id[:MESSAGE_ID_CHARS] if message_id else None,
        sender=_header(message, "From", SENDER_CHARS),
        subject=_header(message, "Subject", SUBJECT_CHARS),
        date=_date(message),
        received_at=received,
        size=fetched.size,
        raw=fetched.raw,
        truncated=fetched.truncated,
        bounce=bounce,
        complaint=complaint,
        headers=_headers(message),
        in_reply_to=normalise_message_id(_header(message, "In-Reply-To", MESSAGE_ID_CHARS)),
    )
