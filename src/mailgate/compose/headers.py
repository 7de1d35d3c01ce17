"""Validation of the subject and of the custom headers a sender may add.

Contract: :func:`validate_headers` returns the custom headers unchanged when every one is
acceptable and otherwise raises :class:`~mailgate.errors.ValidationFailed` listing every bad
header as ``headers.<Name>``. :func:`validate_subject` does the same for ``subject``.

A custom header is refused when

* its name is not RFC 5322 section 3.6.8 ``ftext`` (printable ASCII except the colon);
* Mailgate writes that field itself (addresses, identification, MIME structure, trace and
  signature fields, anything ``X-Mailgate-`` but :data:`CATEGORIES_HEADER`), so a sender
  cannot forge or duplicate it;
* its value holds a control character, or an RFC 2047 encoded-word decoding to one;
* its value has a word too long to fold under the 998-octet line limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from mailgate.compose.controls import text_problem
from mailgate.errors import FieldError, ValidationFailed

#: Fields Mailgate writes itself, lower-cased (RFC 5322 sections 3.6.1 to 3.6.7, RFC 2045
#: section 3 and 4, RFC 6376 section 3.5).
RESERVED_HEADERS: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "sender",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
        "received",
        "dkim-signature",
    }
)
#: Prefixes of fields Mailgate owns: its own fields and every MIME ``Content-`` field.
RESERVED_PREFIXES: Final = ("x-mailgate-", "content-")
#: The one ``X-Mailgate-`` field a sender sets: comma-separated categories, which the
#: SendGrid engine sends as ``categories`` (docs/engines.md); other engines pass it on.
CATEGORIES_HEADER: Final = "X-Mailgate-Categories"
#: ``X-Mailgate-`` fields a sender may set, lower-cased.
SENDER_MAILGATE_FIELDS: Final = frozenset({CATEGORIES_HEADER.lower()})

#: Most custom headers on one message.
MAX_HEADERS: Final = 100
#: Longest custom header value, in characters.
MAX_VALUE_LENGTH: Final = 4000
#: Longest subject, in characters (it is folded or encoded, so this is about sanity only).
MAX_SUBJECT_LENGTH: Final = 2000
# A word (run without spaces) must fit on one line after "Name: " (RFC 5322 section 2.1.1).
_MAX_WORD: Final = 900

# RFC 5322 section 3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126.
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def is_header_name(name: str) -> bool:
    """Whether ``name`` is a syntactically valid field name (RFC 5322 section 3.6.8)."""
    return len(name) <= 76 and _FIELD_NAME.fullmatch(name) is not None


def _is_reserved(name: str) -> bool:
    lowered = name.lower()
    if lowered in SENDER_MAILGATE_FIELDS:
        return False
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES)


def _value_problem(value: str, *, limit: int, foldable: bool) -> str | None:
    """Why ``value`` cannot be a header value; ``foldable`` values may only fold at spaces."""
    problem = text_problem(value)
    if problem is not None:
        return problem
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if not foldable or not value.isascii() or len(value) <= _MAX_WORD:
        return None
    if max(map(len, value.split(" "))) > _MAX_WORD:
        return f"has a word longer than {_MAX_WORD} characters, which cannot be folded"
    return None


def _header_problem(name: object, value: object) -> tuple[str, str] | None:
    """(field, message) for one unacceptable custom header, or None."""
    if not isinstance(name, str) or not is_header_name(name):
        shown = name if isinstance(name, str) and text_problem(name) is None else "?"
        return (
            f"headers.{shown}",
            "header names must be 1 to 76 printable ASCII characters without ':' or spaces",
        )
    field = f"headers.{name}"
    if _is_reserved(name):
        return field, f"{name} is set by Mailgate and cannot be given as a custom header"
    if not isinstance(value, str):
        return field, "must be a string"
    problem = _value_problem(value, limit=MAX_VALUE_LENGTH, foldable=True)
    return None if problem is None else (field, problem)


def validate_headers(headers: object) -> dict[str, str]:
    """The custom headers as a dict, or :class:`ValidationFailed` naming each bad one.

    Names are case-insensitive (RFC 5322 section 1.2.2), so two spellings of one name are
    refused as a duplicate.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationFailed.field("headers", "must be an object of header names to values")
    if len(headers) > MAX_HEADERS:
        raise ValidationFailed.field("headers", f"at most {MAX_HEADERS} custom headers")
    errors: list[FieldError] = []
    seen: set[str] = set()
    for name, value in headers.items():
        problem = _header_problem(name, value)
        if problem is not None:
            errors.append(FieldError(*problem))
            continue
        lowered = str(name).lower()
        if lowered in seen:
            errors.append(FieldError(f"headers.{name}", "duplicate header (names ignore case)"))
        seen.add(lowered)
    if errors:
        raise ValidationFailed("invalid custom headers", errors=errors)
    return dict(headers)


def validate_subject(subject: object) -> str:
    """The subject (None is the empty subject), or :class:`ValidationFailed` naming it."""
    if subject is None:
        return ""
    if not isinstance(subject, str):
        raise ValidationFailed.field("subject", "must be a string")
    # An unstructured subject may be written as encoded-words, so any word length folds.
    problem = _value_problem(subject, limit=MAX_SUBJECT_LENGTH, foldable=False)
    if problem is not None:
        raise ValidationFailed.field("subject", problem)
    return subject
