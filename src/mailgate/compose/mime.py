"""MIME entities: body encodings and the byte-exact rendering of a MIME tree.

Contract: :func:`render` turns a tree of :class:`Leaf` and :class:`Multipart` values into the
content header lines and body octets of one entity. The output uses CRLF line endings only,
holds no line longer than 998 octets and is 7-bit clean (RFC 2045 section 2.7):

* text goes out as ``7bit`` when it is ASCII with lines of at most 998 octets, otherwise as
  ``quoted-printable`` (RFC 2045 section 6.7), or ``base64`` when most of it is non-ASCII;
  line breaks of any kind (CRLF, bare LF, bare CR) become CRLF;
* attachments go out as ``base64`` (RFC 2045 section 6.8) in lines of 76 characters.

Multipart boundaries (RFC 2046 section 5.1.1) are derived from a seed (the Message-ID) and
the position of the multipart in the tree, so the same input renders to the same bytes.
A boundary that happens to occur inside the content is replaced by the next candidate.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from mailgate.compose.header_writer import HARD_LIMIT, content_field, structured

# Controls other than TAB and LF have no place in a 7bit body (RFC 2045 section 2.7).
_NOT_7BIT_OCTETS: Final = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
# Above this share of non-ASCII octets base64 is shorter than quoted-printable.
_BASE64_SHARE: Final = 0.3


@dataclass(frozen=True, slots=True)
class Leaf:
    """A single-part entity: its content header lines (CRLF-terminated) and encoded body."""

    headers: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Multipart:
    """A ``multipart/<subtype>`` entity (RFC 2046 section 5.1) over its parts, in order."""

    subtype: str
    parts: tuple[Leaf | Multipart, ...]


def normalize_newlines(text: str) -> str:
    """``text`` with every CRLF, bare CR and bare LF as one LF."""
    if "\r" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _lines_fit(text: str) -> bool:
    if len(text) <= HARD_LIMIT:
        return True
    return max(map(len, text.split("\n"))) <= HARD_LIMIT


def encode_text(text: str) -> tuple[str, bytes]:
    """The Content-Transfer-Encoding and CRLF body octets for a UTF-8 text body."""
    text = normalize_newlines(text)
    if text.isascii() and _lines_fit(text):
        octets = text.encode("ascii")
        # Deleting the controls changes the length exactly when there is one (a C loop,
        # several times faster than a regular expression search).
        if len(octets.translate(None, _NOT_7BIT_OCTETS)) == len(octets):
            return "7bit", octets.replace(b"\n", b"\r\n")
    data = text.encode()
    if (len(data) - len(text)) > _BASE64_SHARE * len(data):
        return "base64", encode_binary(data)
    # istext: LF marks a line break; the encoder keeps lines at 76 characters and encodes
    # trailing whitespace and lone dots (RFC 2045 section 6.7, rules 3 to 5).
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return "quoted-printable", encoded.replace(b"\n", b"\r\n")


def encode_binary(content: bytes) -> bytes:
    """``content`` as base64 lines of 76 characters, each ending in CRLF."""
    encoded = binascii.b2a_base64(content, newline=False)
    lines = [encoded[start : start + 76] for start in range(0, len(encoded), 76)]
    lines.append(b"")
    return b"\r\n".join(lines)


def text_leaf(subtype: str, text: str) -> Leaf:
    """A ``text/<subtype>; charset=utf-8`` entity."""
    encoding, body = encode_text(text)
    headers = (
        f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n"
    )
    return Leaf(headers, body)


def file_leaf(
    content_type: str,
    content: bytes,
    *,
    filename: str,
    content_id: str | None = None,
) -> Leaf:
    """An attachment, or an inline part referenced as ``cid:<content_id>`` (RFC 2392)."""
    disposition = "attachment" if content_id is None else "inline"
    headers = (
        structured("Content-Type", content_type)
        + "Content-Transfer-Encoding: base64\r\n"
        + content_field("Content-Disposition", disposition, [("filename", filename)])
    )
    if content_id is not None:
        headers += structured("Content-ID", f"<{content_id}>")
    return Leaf(headers, encode_binary(content))


def _boundary(seed: str, index: int, attempt: int) -> bytes:
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{attempt}".encode()).hexdigest()
    # "=_" can occur in neither quoted-printable nor base64 output.
    return f"=_mg{digest[:32]}".encode("ascii")


class _Renderer:
    """Renders one tree; numbers the multiparts depth-first for their boundaries."""

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._count = 0

    def entity(self, node: Leaf | Multipart) -> tuple[str, bytes]:
        if isinstance(node, Leaf):
            return node.headers, node.body
        index = self._count
        self._count += 1
        children = [self.entity(part) for part in node.parts]
        encoded = [headers.encode("ascii") + b"\r\n" + body for headers, body in children]
        attempt = 0
        boundary = _boundary(self._seed, index, attempt)
        while any(b"--" + boundary in child for child in encoded):
            attempt += 1
            boundary = _boundary(self._seed, index, attempt)
        # RFC 2046 section 5.1.1: the CRLF before "--boundary" belongs to the delimiter.
        delimiter = b"--" + boundary + b"\r\n"
        body = b"".join(delimiter + child + b"\r\n" for child in encoded)
        body += b"--" + boundary + b"--\r\n"
        headers = f'Content-Type: multipart/{node.subtype};\r\n boundary="{boundary.decode()}"\r\n'
        return headers, body


def render(node: Leaf | Multipart, *, seed: str) -> tuple[str, bytes]:
    """The content header lines and body octets of ``node``; deterministic in ``seed``."""
    return _Renderer(seed).entity(node)
