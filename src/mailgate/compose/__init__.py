"""Building RFC 5322 messages from validated drafts. Pure functions over values, no IO.

``make_draft`` validates API input into a ``Draft`` (every bad field named by its JSON
path); ``check_limits`` applies the instance's recipient and size limits; ``compose`` turns
a draft into the bytes that go on the wire. ``render_template`` fills a draft's subject,
text and HTML from a sandboxed template; ``smime_sign`` and ``DkimSigner.sign`` sign the
composed bytes (S/MIME first, DKIM last), raising ``SigningError`` rather than returning
unsigned mail.
"""

from __future__ import annotations

from mailgate.compose.addresses import Address, parse_address, parse_addresses
from mailgate.compose.dkim import DkimKeyMaterial, DkimSigner, generate_key
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
from mailgate.compose.signing_errors import SigningError, SigningFailure
from mailgate.compose.smime import Keystore, KeystoreEntry, load_pkcs12, select_entry, smime_sign
from mailgate.compose.templates import (
    RenderedTemplate,
    TemplateCache,
    TemplateSource,
    check_template,
    render_template,
)

__all__ = [
    "ORIGINAL_RECIPIENTS_HEADER",
    "Address",
    "Attachment",
    "DkimKeyMaterial",
    "DkimSigner",
    "Draft",
    "Keystore",
    "KeystoreEntry",
    "RenderedTemplate",
    "SigningError",
    "SigningFailure",
    "TemplateCache",
    "TemplateSource",
    "check_limits",
    "check_template",
    "compose",
    "generate_key",
    "load_pkcs12",
    "make_draft",
    "new_message_id",
    "parse_address",
    "parse_addresses",
    "render_template",
    "select_entry",
    "smime_sign",
    "validate_headers",
    "validate_subject",
]
