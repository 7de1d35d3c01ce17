"""A message submitted as RFC 5322 octets, read strictly: header fields and body.

Contract: :func:`parse_message` returns a :class:`RawMessage` or raises one
:class:`~mailgate.errors.ValidationFailed` naming where the message is wrong. Nothing is
repaired ("input is rejected, not repaired", SPEC.md section 8). Refused:

* an empty message, a message not ending in CRLF;
* a NUL octet anywhere; a bare CR or a bare LF anywhere (RFC 5322 section 2.3: CR and LF
  only occur together as CRLF), reported as ``line N``;
* a line longer than 998 octets (RFC 5322 section 2.1.1);
* a header section that does not start with a field, a line in it that is neither a field
  (``Name: value``, RFC 5322 section 2.2) nor a folded continuation, a continuation line of
  whitespace only (obsolete syntax, RFC 5322 section 4.2), a field name that is not
  ``ftext`` or has whitespace before its colon;
* a header value that is not UTF-8 (RFC 6532 allows UTF-8 and nothing else), or that holds
  a control character once unfolded, or an RFC 2047 encoded-word decoding to one (the
  header injection tricks of :mod:`mailgate.compose.controls`), named by its field name.

Folding whitespace is kept as received: a field's :attr:`HeaderField.raw` octets go back on
the wire unchanged, so what the application wrote is what is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mailgate.compose.controls import text_problem
from mailgate.compose.headers import is_header_name
from mailgate.errors import FieldError, ValidationFailed

#: RFC 5322 section 2.1.1: a line is at most 998 octets, CRLF excluded.
MAX_LINE: Final = 998

_BARE: Final = re.compile(rb"\r(?!\n)|(?<!\r)\n")
# RFC 5322 section 2.2: field-name ":" (no whitespace before the colon, section 3.6.8).
_FIELD: Final = re.compile(rb"([^:\s]*):")
_WSP: Final = (b" ", b"\t")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field as received."""

    #: The field name as written.
    name: str
    #: The unfolded value (RFC 5322 section 2.2.3), surrounding whitespace removed.
    value: str
    #: The field's octets: every folded line, each ending in CRLF.
    raw: bytes
    #: The (1-based) line the field starts on.
    line: int

    @property
    def key(self) -> str:
        """The name lower-cased: field names ignore case (RFC 5322 section 1.2.2)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A strictly parsed message: its header fields in order, and the body octets."""

    fields: tuple[HeaderField, ...]
    #: Everything after the empty line that ends the header section (may be empty).
    body: bytes

    def named(self, name: str) -> list[HeaderField]:
        """Every field called ``name`` (any case), in order."""
        key = name.lower()
        return [f for f in self.fields if f.key == key]

    @property
    def eight_bit_headers(self) -> bool:
        """Whether a header holds non-ASCII (UTF-8, RFC 6532): relaying needs SMTPUTF8."""
        return any(not f.raw.isascii() for f in self.fields)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _check_octets(data: bytes) -> list[bytes]:
    """The lines of ``data`` (CRLF removed), or ValidationFailed for a forbidden octet."""
    if not data:
        raise ValidationFailed.field("message", "is empty")
    nul = data.find(b"\x00")
    if nul != -1:
        raise ValidationFailed.field(f"line {_line_of(data, nul)}", "holds a NUL octet")
    bare = _BARE.search(data)
    if bare is not None:
        kind = "CR" if bare.group() == b"\r" else "LF"
        raise ValidationFailed.field(
            f"line {_line_of(data, bare.start())}",
            f"holds a bare {kind}; every line must end in CRLF (RFC 5322 section 2.3)",
        )
    if not data.endswith(b"\r\n"):
        raise ValidationFailed.field("message", "must end with CRLF")
    lines = data[:-2].split(b"\r\n")
    if max(map(len, lines)) > MAX_LINE:
        number = next(i for i, line in enumerate(lines, 1) if len(line) > MAX_LINE)
        raise ValidationFailed.field(
            f"line {number}",
            f"is longer than {MAX_LINE} octets (RFC 5322 section 2.1.1); "
            "encode long content as quoted-printable or base64",
        )
    return lines


def _decode(name: str, value: bytes, errors: list[FieldError]) -> str | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(FieldError(name, "is not UTF-8 (RFC 6532); encode it as RFC 2047 words"))
        return None
    # Folding whitespace is a space to a reader (RFC 5322 section 3.2.2), and so is a TAB.
    text = text.replace("\t", " ").strip(" ")
    problem = text_problem(text)
    if problem is not None:
        errors.append(FieldError(name, problem))
        return None
    return text


def _start_field(line: bytes, number: int) -> str:
    match = _FIELD.match(line)
    name = match.group(1).decode("ascii", "replace") if match else ""
    if match is None or not is_header_name(name):
        raise ValidationFailed.field(
            f"line {number}",
            "is not a header field ('Name: value'); the header section ends with an empty "
            "line before the body (RFC 5322 section 2.1)",
        )
    return name


def parse_message(data: bytes) -> RawMessage:
    """Split and check ``data`` (see the module docstring for what is refused)."""
    lines = _check_octets(data)
    if lines[0] == b"" or lines[0].startswith(_WSP):
        raise ValidationFailed.field(
            "line 1", "must be a header field: a message starts with its header section"
        )
    errors: list[FieldError] = []
    fields: list[HeaderField] = []
    # (name, first line number, lines) of the field being read.
    current: tuple[str, int, list[bytes]] | None = None

    def finish() -> None:
        if current is None:
            return
        name, start, parts = current
        raw = b"\r\n".join(parts) + b"\r\n"
        value = b"".join(parts)[len(name) + 1 :]
        text = _decode(name, value, errors)
        if text is not None:
            fields.append(HeaderField(name=name, value=text, raw=raw, line=start))

    for number, line in enumerate(lines, 1):
        if line == b"":
            break
        if line.startswith(_WSP):
            if not line.strip(b" \t"):
                raise ValidationFailed.field(
                    f"line {number}",
                    "is a folded header line of whitespace only (obsolete syntax, "
                    "RFC 5322 section 4.2)",
                )
            assert current is not None
            current[2].append(line)
            continue
        finish()
        current = (_start_field(line, number), number, [line])
    finish()
    if errors:
        names = ", ".join(e.field for e in errors)
        raise ValidationFailed(f"invalid header fields: {names}", errors=errors)
    # Line 1 is a field, so the first empty line is the first CRLF CRLF.
    separator = data.find(b"\r\n\r\n")
    body = data[separator + 4 :] if separator != -1 else b""
    return RawMessage(fields=tuple(fields), body=body)
