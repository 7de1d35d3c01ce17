"""The header fields of a submitted message: what they mean to Mailgate, checked strictly.

Contract: :func:`read_headers` takes a :class:`~mailgate.services.raw_message.RawMessage`
and returns :class:`SubmittedHeaders`, or raises one
:class:`~mailgate.errors.ValidationFailed` listing every bad field by its name (``From``,
``To[1]``, ``Message-ID``, ``X-Mailgate-Foo`` …). Rules:

* ``From`` is required and holds exactly one mailbox; ``To``, ``Cc`` and ``Reply-To`` are
  address lists. Every address goes through the strict parser of the REST API
  (:func:`mailgate.compose.parse_address`): no comments, no groups (except the empty
  ``undisclosed-recipients:;`` of RFC 5322 section 3.6.3), no quoted local parts.
* The fields RFC 5322 section 3.6 and RFC 2045 allow once appear at most once.
* ``Date`` must be an RFC 5322 date-time and ``Message-ID`` an RFC 5322 msg-id; when they
  are missing Mailgate adds them, as a submission server may (RFC 6409 section 8).
* ``Sender`` and ``Return-Path`` are refused: Mailgate sends as the ``From`` account, and
  the return path is the final delivery server's to write (RFC 5321 section 4.4).
* ``Bcc`` is dropped: the envelope says who receives a message, and a Bcc field would show
  them to everyone (RFC 5322 section 3.6.3).
* ``X-Mailgate-App`` and ``X-Mailgate-Stage`` choose the app and the stage and are removed;
  ``X-Mailgate-Categories`` is kept (SendGrid categories, docs/engines.md); every other
  ``X-Mailgate-`` field is Mailgate's own and refused.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from typing import Final

from mailgate.compose.addresses import Address, parse_addresses
from mailgate.compose.controls import has_surrogate
from mailgate.compose.headers import SENDER_MAILGATE_FIELDS, validate_subject
from mailgate.errors import FieldError, ValidationFailed
from mailgate.services.raw_message import HeaderField, RawMessage

APP_HEADER: Final = "X-Mailgate-App"
STAGE_HEADER: Final = "X-Mailgate-Stage"
_CONTROLS: Final = frozenset({APP_HEADER.lower(), STAGE_HEADER.lower()})

#: Fields that may appear at most once (RFC 5322 section 3.6, RFC 2045 section 3).
ONCE: Final = frozenset(
    {
        "date",
        "from",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "message-id",
        "in-reply-to",
        "references",
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        *_CONTROLS,
    }
)
_REFUSED: Final = {
    "sender": "is refused: Mailgate sends as the From account; remove the Sender field",
    "return-path": "is written by the final delivery server (RFC 5321 section 4.4); remove it",
}
#: The longest Message-ID kept (the delivery log's column).
MAX_MESSAGE_ID: Final = 255

# RFC 5322 section 3.6.4: "<" dot-atom-text "@" (dot-atom-text / no-fold-literal) ">".
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_MSG_ID: Final = re.compile(rf"<{_ATEXT}@(?:{_ATEXT}|\[[\x21-\x5a\x5e-\x7e]*\])>")
# RFC 5322 section 3.4: a group with no member, the customary "undisclosed-recipients:;".
_EMPTY_GROUP: Final = re.compile(r"[^\"():;<>@,\[\]\\]+:\s*;")


@dataclass(frozen=True, slots=True)
class SubmittedHeaders:
    """What the header fields of a submitted message say."""

    from_: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    has_reply_to: bool
    #: The subject as a reader shows it (encoded-words decoded), for the delivery log.
    subject: str
    message_id: str | None
    has_date: bool
    #: ``X-Mailgate-App`` and ``X-Mailgate-Stage``, when given.
    app: str | None
    stage: str | None
    #: The fields that go on the wire, in order (no Bcc, no X-Mailgate- controls).
    kept: tuple[HeaderField, ...]


def decoded(text: str) -> str:
    """``text`` with its RFC 2047 encoded-words decoded; as it is when they cannot be."""
    if "=?" not in text:
        return text
    try:
        decoded_text = str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return text
    # A word such as =?utf-7?q?+2AA-?= decodes to a lone surrogate, which is not text.
    return text if has_surrogate(decoded_text) else decoded_text


def split_addresses(value: str) -> list[str]:
    """An address-list value split at the commas outside quotes and angle brackets."""
    items: list[str] = []
    start, quoted, angle, escaped = 0, False, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "<>":
            angle = char == "<"
        elif char == "," and not quoted and not angle:
            items.append(value[start:index])
            start = index + 1
    items.append(value[start:])
    return [item.strip(" ") for item in items]


def _addresses(field: HeaderField, errors: list[FieldError]) -> tuple[Address, ...]:
    if _EMPTY_GROUP.fullmatch(field.value):
        return ()
    items = split_addresses(field.value)
    if "" in items:
        errors.append(FieldError(field.name, "has an empty entry between commas"))
        return ()
    try:
        parsed = parse_addresses(items, field=field.name)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
        return ()
    # Display names travel as encoded-words; the log and the test-list header want text.
    return tuple(replace(a, name=decoded(a.name)) if a.name else a for a in parsed)


def _check_field(field: HeaderField, errors: list[FieldError]) -> None:
    key = field.key
    if key in _REFUSED:
        errors.append(FieldError(field.name, _REFUSED[key]))
    elif key.startswith("x-mailgate-") and key not in _CONTROLS | SENDER_MAILGATE_FIELDS:
        errors.append(FieldError(field.name, f"{field.name} is set by Mailgate; remove it"))
    elif key == "date":
        try:
            parsedate_to_datetime(field.value)
        except (TypeError, ValueError):
            errors.append(FieldError(field.name, "is not an RFC 5322 date-time"))
    elif key == "message-id" and (
        _MSG_ID.fullmatch(field.value) is None or len(field.value) > MAX_MESSAGE_ID
    ):
        errors.append(
            FieldError(
                field.name,
                f"is not an RFC 5322 msg-id '<left@right>' of at most {MAX_MESSAGE_ID} "
                "characters; leave it out and Mailgate adds one",
            )
        )
    elif key == "subject":
        try:
            validate_subject(field.value)
        except ValidationFailed as exc:
            errors.extend(FieldError(field.name, e.message) for e in exc.errors)


def read_headers(message: RawMessage) -> SubmittedHeaders:
    """What ``message``'s header says (see the module docstring for what is refused)."""
    errors: list[FieldError] = []
    counts = Counter(f.key for f in message.fields)
    for key, count in counts.items():
        if key in ONCE and count > 1:
            name = message.named(key)[0].name
            errors.append(FieldError(name, f"appears {count} times; at most once"))
    for field in message.fields:
        _check_field(field, errors)
    found = {f.key: f for f in message.fields}
    lists = {
        key: _addresses(found[key], errors)
        for key in ("from", "to", "cc", "reply-to")
        if key in found
    }
    senders = lists.get("from", ())
    if "from" not in found:
        errors.append(FieldError("From", "is required: the address of an email account"))
    elif len(senders) != 1 and not any(e.field.startswith(found["from"].name) for e in errors):
        errors.append(FieldError(found["from"].name, "must hold exactly one address"))
    if errors:
        names = ", ".join(dict.fromkeys(e.field for e in errors))
        raise ValidationFailed(f"invalid header fields: {names}", errors=errors)
    control = {key: found[key].value for key in _CONTROLS if key in found}
    return SubmittedHeaders(
        from_=senders[0],
        to=lists.get("to", ()),
        cc=lists.get("cc", ()),
        has_reply_to="reply-to" in found,
        subject=decoded(found["subject"].value) if "subject" in found else "",
        message_id=found["message-id"].value if "message-id" in found else None,
        has_date="date" in found,
        app=control.get(APP_HEADER.lower()) or None,
        stage=control.get(STAGE_HEADER.lower()) or None,
        kept=tuple(f for f in message.fields if f.key != "bcc" and f.key not in _CONTROLS),
    )
