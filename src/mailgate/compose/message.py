"""Drafts and their composition into RFC 5322 messages.

Contract of :func:`compose`: given a validated :class:`Draft` (see
:func:`mailgate.compose.drafts.make_draft`), a Message-ID and a date, it returns the complete
message as bytes:

* CRLF line endings only, no bare CR or LF, no line longer than 998 octets (RFC 5322
  section 2.1.1 and 2.3);
* ``MIME-Version``, ``Date``, ``Message-ID`` and the given addresses; never a ``Bcc`` field
  (RFC 5322 section 3.6.3 lets the sender drop it, and Mailgate always does);
* MIME shape (RFC 2046): one text part; ``multipart/alternative`` for text and HTML;
  ``multipart/related`` (RFC 2387) for HTML with inline images (attachments that have a
  ``content_id``); ``multipart/mixed`` around the body when there are attachments;
* deterministic: the same draft, Message-ID and date give the same bytes.

Encoding choice: bodies and attachments are always transfer-encoded to 7-bit (7bit,
quoted-printable or base64), so the message never needs 8BITMIME. Header text is ASCII with
RFC 2047 encoded-words for non-ASCII display names and subjects; the only exception is an
address with a non-ASCII local part, which is written as UTF-8 (RFC 6532) and makes
:attr:`Draft.needs_smtputf8` true: such a message must be relayed with SMTPUTF8 (RFC 6531).

Composition is hand-built rather than done through ``email.message.EmailMessage`` with the
SMTP policy: it produces the same wire format at a fraction of the cost, and its output is
checked against the ``email`` package parser in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Final

from email_validator import EmailNotValidError, validate_email

from mailgate.compose.addresses import Address
from mailgate.compose.header_writer import address_list, structured, unstructured
from mailgate.compose.headers import is_header_name
from mailgate.compose.mime import Leaf, Multipart, file_leaf, render, text_leaf
from mailgate.domain.ids import random_bytes

#: The header naming the To and Cc recipients a test list replaced (never the Bcc ones).
ORIGINAL_RECIPIENTS_HEADER: Final = "X-Mailgate-Original-Recipients"

# RFC 5322 section 3.6.4 msg-id, restricted to what Mailgate generates and accepts.
_MESSAGE_ID: Final = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>")
_HOSTNAME: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One file. With a ``content_id`` it is an inline image referenced from the HTML as
    ``cid:<content_id>`` and goes into ``multipart/related``."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated message before composition. Build it with ``make_draft``."""

    from_: Address
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()

    @property
    def recipients(self) -> tuple[Address, ...]:
        """Every recipient, Bcc included, in To, Cc, Bcc order."""
        return self.to + self.cc + self.bcc

    @property
    def needs_smtputf8(self) -> bool:
        """Whether any address (Bcc included: it is in the envelope) has a non-ASCII local
        part, so that the message needs SMTPUTF8 (RFC 6531)."""
        addresses = (self.from_, *self.recipients, *self.reply_to)
        return any(address.needs_smtputf8 for address in addresses)


def new_message_id(domain: str) -> str:
    """A fresh ``<random@domain>`` Message-ID (RFC 5322 section 3.6.4) with 128 random bits.

    ``domain`` is the sender's domain; an internationalised one is written as its A-label.
    """
    return f"<{random_bytes(16).hex()}@{_message_id_domain(domain)}>"


@lru_cache(maxsize=1024)
def _message_id_domain(domain: str) -> str:
    """The checked, lower-case ASCII form of a Message-ID's domain (a sender sends many)."""
    if not domain.isascii():
        try:
            domain = validate_email(
                f"x@{domain}", check_deliverability=False, test_environment=True
            ).ascii_domain
        except EmailNotValidError as exc:
            raise ValueError(f"not a valid domain for a Message-ID: {domain!r}") from exc
    if _HOSTNAME.fullmatch(domain) is None:
        raise ValueError(f"not a valid domain for a Message-ID: {domain!r}")
    return domain.lower()


_DAYS: Final[tuple[str, ...]] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final[tuple[str, ...]] = (
    *("Jan", "Feb", "Mar", "Apr", "May", "Jun"),
    *("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
)


class _LastDate:
    """The last date written and its text, as one tuple (replaced whole, so threads never
    see the date of one pair with the text of another). Datetimes are immutable: the same
    object always reads the same."""

    pair: tuple[datetime | None, str] = (None, "")


def format_date(date: datetime) -> str:
    """RFC 5322 section 3.3 date-time of an aware datetime: ``Sun, 31 Mar 2024 12:00:00 +0000``.

    Same output as ``email.utils.format_datetime`` (checked in the tests), without its cost.
    """
    last = _LastDate.pair
    if last[0] is date:
        # A batch of messages accepted together shares one date object: written once.
        return last[1]
    offset = date.utcoffset()
    if offset is None:
        raise ValueError("the Date of a message must be timezone-aware")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    text = (
        f"{_DAYS[date.weekday()]}, {date.day:02d} {_MONTHS[date.month - 1]} {date.year:04d} "
        f"{date.hour:02d}:{date.minute:02d}:{date.second:02d} {sign}{hours:02d}{minutes:02d}"
    )
    _LastDate.pair = (date, text)
    return text


@lru_cache(maxsize=256)
def _from_field(sender: Address) -> str:
    """The From field; a batch of messages from one account writes the same one each time."""
    return address_list("From", (sender,))


def _body(draft: Draft) -> Leaf | Multipart:
    """The MIME tree of the draft (RFC 2046 section 5.1, RFC 2387)."""
    inline = [a for a in draft.attachments if a.content_id is not None and draft.html is not None]
    files = [a for a in draft.attachments if a.content_id is None or draft.html is None]
    html: Leaf | Multipart | None = None
    if draft.html is not None:
        html = text_leaf("html", draft.html)
        if inline:
            images = tuple(
                file_leaf(a.content_type, a.content, filename=a.filename, content_id=a.content_id)
                for a in inline
            )
            html = Multipart("related", (html, *images))
    text = text_leaf("plain", draft.text) if draft.text is not None else None
    body: Leaf | Multipart
    if text is not None and html is not None:
        # RFC 2046 section 5.1.4: the preferred alternative comes last.
        body = Multipart("alternative", (text, html))
    else:
        body = text or html or text_leaf("plain", "")
    if files:
        parts = tuple(file_leaf(a.content_type, a.content, filename=a.filename) for a in files)
        body = Multipart("mixed", (body, *parts))
    return body


def compose(
    draft: Draft,
    *,
    message_id: str,
    date: datetime,
    original_recipients: tuple[Address, ...] | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The RFC 5322 message for ``draft`` (see the module docstring for the contract).

    ``date`` must be timezone-aware. ``original_recipients`` (the To and Cc a test list
    replaced) adds ``X-Mailgate-Original-Recipients``. ``extra_headers`` are trusted fields
    Mailgate adds itself (they may use the ``X-Mailgate-`` prefix); they go after the
    draft's own custom headers.
    """
    if _MESSAGE_ID.fullmatch(message_id) is None:
        raise ValueError(f"malformed Message-ID: {message_id!r}")
    # RFC 5322 section 3.6: the order is free; this is the customary one.
    head = [
        f"Date: {format_date(date)}\r\n",
        _from_field(draft.from_),
    ]
    if draft.reply_to:
        head.append(address_list("Reply-To", draft.reply_to))
    if draft.to:
        head.append(address_list("To", draft.to))
    if draft.cc:
        head.append(address_list("Cc", draft.cc))
    head.append(unstructured("Subject", draft.subject))
    head.append(f"Message-ID: {message_id}\r\n")
    head.append("MIME-Version: 1.0\r\n")
    if original_recipients is not None:
        head.append(address_list(ORIGINAL_RECIPIENTS_HEADER, original_recipients))
    for name, value in draft.headers.items():
        head.append(structured(name, value))
    for name, value in extra_headers:
        if not is_header_name(name):
            raise ValueError(f"malformed header name: {name!r}")
        head.append(structured(name, value))
    content_headers, body = render(_body(draft), seed=message_id)
    head.append(content_headers)
    if not body.endswith(b"\r\n"):
        # SMTP DATA (RFC 5321 section 4.1.1.4) ends with CRLF "." CRLF; end on a line break.
        body += b"\r\n"
    return "".join(head).encode() + b"\r\n" + body
