"""Recognising S/MIME-signed mail (a delivery rule needs it; signing is in compose)."""

from __future__ import annotations

import re

_SIGNED_TYPE = re.compile(
    rb"^content-type:[ \t]*multipart/signed;(?:[^\r\n]|\r\n[ \t])*"
    rb"protocol=\"?application/(?:x-)?pkcs7-signature",
    re.IGNORECASE | re.MULTILINE,
)


def is_smime_signed(raw: bytes) -> bool:
    """Whether the top-level entity of ``raw`` is an S/MIME detached signature
    (``multipart/signed`` with a PKCS #7 signature part, RFC 8551 section 3.5.3)."""
    end = raw.find(b"\r\n\r\n")
    header = raw if end < 0 else raw[: end + 2]
    return _SIGNED_TYPE.search(header) is not None
