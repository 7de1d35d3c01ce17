"""Building RFC 5322 messages from validated drafts. Pure functions over values, no IO.

``make_draft`` validates API input into a ``Draft`` (every bad field named by its JSON
path); ``check_limits`` applies the instance's recipient and size limits; ``compose`` turns
a draft into the bytes that go on the wire.
"""

from __future__ import annotations

from mailgate.compose.addresses import Address, parse_address, parse_addresses
from mailgate.compose.drafts import make_draft
from mailgate.compose.headers import validate_headers, validate_subject
from mailgate.compose.limits import check_limits
from mailgate.compose.message import (
    ORIGINAL_RECIPIENTS_HEADER,
    Attachment,
    Draft,
    compose,
    new_message_id,
)

__all__ = [
    "ORIGINAL_RECIPIENTS_HEADER",
    "Address",
    "Attachment",
    "Draft",
    "check_limits",
    "compose",
    "make_draft",
    "new_message_id",
    "parse_address",
    "parse_addresses",
    "validate_headers",
    "validate_subject",
]
