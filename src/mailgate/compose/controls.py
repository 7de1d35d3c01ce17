"""Unsafe characters in header text: control characters and the encoded-word trick.

Every string that ends up in a header (addresses, display names, the subject, custom header
values, attachment filenames) passes through :func:`text_problem`. A header line ends at CRLF
(RFC 5322 section 2.2), so a CR or LF smuggled into a value would start a new header or the
body; other control characters confuse parsers and displays. Mailgate rejects them instead of
stripping them ("input is rejected, not repaired").

The encoded-word trick: RFC 2047 lets a header carry ``=?charset?B?...?=`` text that a mail
reader decodes for display. A value that is harmless on the wire can therefore decode to a
CR, LF or NUL in the reader. Such values are rejected too.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

# C0 controls (including TAB, CR, LF, NUL), DEL, C1 controls, and the Unicode line and
# paragraph separators, which some readers treat as line breaks.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Control bytes of ASCII-compatible charsets, checked on the raw decoded octets so that a
# charset Mailgate cannot decode still cannot hide one.
_CONTROL_BYTE: Final = re.compile(b"[\x00-\x1f\x7f]")

# RFC 2047 section 2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
# RFC 2231 section 5 adds an optional "*language" suffix to the charset.
_ENCODED_WORD: Final = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")


# Code points U+D800 to U+DFFF: a Python str may hold them, UTF-8 text never does.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def has_surrogate(value: str) -> bool:
    """Whether ``value`` holds a lone UTF-16 surrogate (it cannot be encoded as UTF-8)."""
    # isascii() is a flag CPython keeps on every str: free for the common ASCII text, where
    # the search would scan every character.
    return not value.isascii() and _SURROGATE.search(value) is not None


def describe_char(char: str) -> str:
    """``U+000D`` style name of one character, safe to echo back in an error message."""
    return f"U+{ord(char):04X}"


def control_problem(value: str) -> str | None:
    """Why ``value`` may not go into a header because of a control character, or None."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    return f"must not contain control characters (found {describe_char(found.group())})"


def has_control(value: str) -> bool:
    """Whether ``value`` holds any character :func:`control_problem` refuses."""
    return _CONTROL.search(value) is not None


def has_encoded_word(value: str) -> bool:
    """Whether ``value`` holds an RFC 2047 encoded-word (``=?charset?Q?text?=``)."""
    return "=?" in value and _ENCODED_WORD.search(value) is not None


def _decode_encoded_text(encoding: str, text: str) -> bytes | None:
    """The octets of one encoded-word's text, or None when they cannot be decoded."""
    data = text.encode("ascii", "replace")
    try:
        if encoding in "Qq":
            # RFC 2047 section 4.2: "_" stands for SPACE, "=XX" for one octet.
            return binascii.a2b_qp(data, header=True)
        # RFC 2047 section 4.1: base64; readers tolerate missing padding, so pad generously.
        return binascii.a2b_base64(data + b"==", strict_mode=False)
    except (binascii.Error, ValueError):
        return None


def encoded_word_problem(value: str) -> str | None:
    """Why an RFC 2047 encoded-word inside ``value`` is unsafe, or None.

    Each encoded-word is decoded as a mail reader would. An encoded-word that decodes to a
    control character (in its octets, or in its text when the charset is known) is refused.
    Encoded-words that cannot be decoded at all are left alone: readers show them verbatim.
    """
    if "=?" not in value:
        return None
    for match in _ENCODED_WORD.finditer(value):
        charset, encoding, text = match.groups()
        octets = _decode_encoded_text(encoding, text)
        if octets is None:
            continue
        if _CONTROL_BYTE.search(octets) is not None:
            return "must not contain RFC 2047 encoded-words that decode to control characters"
        try:
            # Bytes-to-bytes codecs (base64, zlib, ...) raise LookupError here, and some text
            # codecs (idna, punycode) cannot decode leniently: no reader decodes such a word.
            decoded = octets.decode(charset, "replace")
        except (LookupError, UnicodeError, ValueError):
            continue
        if _CONTROL.search(decoded) is not None:
            return "must not contain RFC 2047 encoded-words that decode to control characters"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` is unsafe in a header: a control character or a hostile encoded-word."""
    return control_problem(value) or encoded_word_problem(value)
