"""Writing header fields: folding, RFC 2047 encoded-words, mailboxes, RFC 2231 parameters.

Contract: every function returns complete header lines ending in CRLF, with no line longer
than 998 octets (RFC 5322 section 2.1.1) and, where the content allows, no longer than 78.
Inputs are expected to be validated already; as a last line of defence a value holding a
control character raises ``ValueError`` instead of reaching the wire.

Folding (RFC 5322 section 3.2.2) only ever happens in front of an existing space between
tokens, so unfolding gives back exactly the value that was written.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import quote

from mailgate.compose.addresses import Address
from mailgate.compose.controls import has_control

#: RFC 5322 section 2.1.1: lines MUST be at most 998 octets and SHOULD be at most 78.
HARD_LIMIT: Final = 998
SOFT_LIMIT: Final = 78

# Octets of UTF-8 per encoded-word: "=?utf-8?b?" + 52 base64 characters + "?=" is 64
# characters, below the 75 of RFC 2047 section 2, leaving room for the header name.
_WORD_OCTETS: Final = 39

# RFC 5322 section 3.2.3 atext: a display name made only of these words needs no quoting.
_ATOMS: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 2045 section 5.1 token characters: a parameter value made of these needs no quotes.
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+")
# RFC 2231 section 7 attribute-char besides letters and digits (quote() keeps "_.-~").
_ATTR_SAFE: Final = "!#$&+^`|"
# Characters of an RFC 2231 continuation segment (section 3).
_SEGMENT: Final = 60


def _guard(value: str) -> None:
    if has_control(value):
        raise ValueError("control character in header content")


def fold(name: str, tokens: Iterable[str]) -> str | None:
    """``name: token token ...`` folded at the spaces between tokens, or None if a token
    makes a line longer than 998 octets.

    Empty tokens (from runs of spaces) are never a fold point, so no line is whitespace only.
    """
    if not isinstance(tokens, list):
        tokens = list(tokens)
    single = f"{name}: {' '.join(tokens)}"
    if len(single) <= SOFT_LIMIT:
        return single + "\r\n"
    lines: list[str] = []
    line = f"{name}:"
    has_content = False
    for token in tokens:
        if has_content and token and len(line) + 1 + len(token) > SOFT_LIMIT:
            lines.append(line)
            line = " " + token
        else:
            line = f"{line} {token}"
        has_content = has_content or bool(token)
        # A character is at most 4 octets in UTF-8: only long lines need the exact count.
        if len(line) > HARD_LIMIT // 4 and len(line.encode()) > HARD_LIMIT:
            return None
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 "B" encoded-words of UTF-8, split between characters.

    Split points never fall inside a UTF-8 sequence (RFC 2047 section 5, rule 3).
    """
    data = text.encode()
    words: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_OCTETS, len(data))
        # Back off over UTF-8 continuation octets (10xxxxxx).
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(f"=?utf-8?b?{b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return words


def unstructured(name: str, value: str) -> str:
    """An unstructured field (RFC 5322 section 3.2.5) such as Subject.

    ASCII text is folded at its spaces; non-ASCII text, or text with a word too long to
    fold, is written as encoded-words.
    """
    _guard(value)
    if value.isascii():
        if len(name) + 2 + len(value) <= SOFT_LIMIT:
            return f"{name}: {value}\r\n"
        folded = fold(name, value.split(" "))
        if folded is not None:
            return folded
    folded = fold(name, encoded_words(value))
    assert folded is not None  # encoded-words are short
    return folded


def structured(name: str, value: str) -> str:
    """A field whose ASCII value must not be re-encoded (Message-ID, List-Unsubscribe).

    Non-ASCII values are written as encoded-words like :func:`unstructured`; an ASCII value
    with a word that cannot be folded below 998 octets raises ``ValueError``.
    """
    _guard(value)
    if not value.isascii():
        return unstructured(name, value)
    folded = fold(name, value.split(" "))
    if folded is None:
        raise ValueError(f"header {name} cannot be folded below {HARD_LIMIT} octets")
    return folded


def display_name_tokens(name: str) -> list[str]:
    """A display name as phrase tokens (RFC 5322 section 3.2.5).

    Atoms go out as they are; other ASCII names as one quoted-string (RFC 5322 section
    3.2.4), which also keeps a literal ``=?`` from being decoded (RFC 2047 section 5);
    non-ASCII names as encoded-words, which RFC 2047 section 5 (3) allows in a phrase.
    """
    _guard(name)
    if not name.isascii():
        return encoded_words(name)
    if "=?" not in name and _ATOMS.fullmatch(name):
        return name.split(" ")
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return [f'"{escaped}"']


def mailbox_tokens(address: Address) -> list[str]:
    """``name <addr>`` or ``addr`` as tokens; the address in its wire form.

    A non-ASCII local part goes out as UTF-8 (RFC 6532 section 3.2), which requires the
    message to be relayed with SMTPUTF8.
    """
    email = address.wire_email
    _guard(email)
    if address.name is None:
        return [email]
    return [*display_name_tokens(address.name), f"<{email}>"]


def address_list(name: str, addresses: Sequence[Address]) -> str:
    """An address-list field (RFC 5322 section 3.4) such as To, folded between mailboxes."""
    tokens: list[str] = []
    last = len(addresses) - 1
    for index, address in enumerate(addresses):
        mailbox = mailbox_tokens(address)
        if index != last:
            mailbox[-1] += ","
        tokens.extend(mailbox)
    folded = fold(name, tokens)
    if folded is None:  # pragma: no cover - names and addresses are length-limited
        raise ValueError(f"header {name} cannot be folded below {HARD_LIMIT} octets")
    return folded


def parameter_tokens(attribute: str, value: str) -> list[str]:
    """``; attribute=value`` for Content-Type or Content-Disposition, as fold tokens.

    ASCII values are a token or a quoted-string (RFC 2045 section 5.1); non-ASCII values use
    RFC 2231 section 4 ``attribute*=utf-8''%XX`` encoding, split into numbered continuations
    (RFC 2231 section 3) when long so that every line stays short.
    """
    _guard(value)
    if value.isascii():
        if _TOKEN.fullmatch(value):
            return [f"{attribute}={value};"]
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return [f'{attribute}="{escaped}";']
    encoded = quote(value, safe=_ATTR_SAFE)
    if len(encoded) <= _SEGMENT:
        return [f"{attribute}*=utf-8''{encoded};"]
    segments: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + _SEGMENT, len(encoded))
        # Never split a %XX triplet.
        percent = encoded.rfind("%", end - 2, end)
        if percent != -1 and end < len(encoded):
            end = percent
        segments.append(encoded[start:end])
        start = end
    tokens = [f"{attribute}*0*=utf-8''{segments[0]};"]
    tokens.extend(f"{attribute}*{n}*={segment};" for n, segment in enumerate(segments[1:], 1))
    return tokens


def content_field(name: str, value: str, parameters: Sequence[tuple[str, str]] = ()) -> str:
    """``Content-Type``/``Content-Disposition`` with parameters, folded between them."""
    tokens = [value + (";" if parameters else "")]
    for attribute, parameter in parameters:
        tokens.extend(parameter_tokens(attribute, parameter))
    if parameters:
        tokens[-1] = tokens[-1].removesuffix(";")
    folded = fold(name, tokens)
    if folded is None:
        raise ValueError(f"header {name} cannot be folded below {HARD_LIMIT} octets")
    return folded
