"""The MIME structure of a submitted message, checked (RFC 2045, RFC 2046).

Contract: :func:`check_mime` returns None when the message's MIME tree is sound and raises
:class:`~mailgate.errors.ValidationFailed` naming the first bad part otherwise (``message``
for the top level, ``part 2``, ``part 2.1`` … inside multiparts). Refused:

* a multipart without a boundary, without its first delimiter or without its close
  delimiter (RFC 2046 section 5.1.1), or with a transfer encoding other than 7bit or 8bit
  (RFC 2045 section 6.4); a part whose header has no empty line before its body;
* a Content-Transfer-Encoding other than 7bit, 8bit, quoted-printable or base64 (``binary``
  needs BINARYMIME, RFC 3030, which Mailgate does not offer);
* 8-bit octets in a leaf part that does not declare ``8bit`` (RFC 2045 section 2.7: 7bit,
  quoted-printable and base64 data are ASCII).
* multiparts nested deeper than the parser can follow (the interpreter's recursion limit).

Nothing is decoded or rewritten: the parser only reads the structure. ``compat32`` is the
policy because it is the fastest, and the checks here only need the defects it records.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import errors as email_errors
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Final

from mailgate.errors import ValidationFailed

#: Transfer encodings a submitted message may use (RFC 2045 section 6.1, RFC 6152).
ENCODINGS: Final = frozenset({"7bit", "8bit", "quoted-printable", "base64"})

_DEFECTS: Final[dict[type[email_errors.MessageDefect], str]] = {
    email_errors.NoBoundaryInMultipartDefect: "is a multipart without a boundary parameter",
    email_errors.StartBoundaryNotFoundDefect: "is a multipart whose boundary never appears",
    email_errors.CloseBoundaryNotFoundDefect: (
        "is a multipart without its closing boundary ('--boundary--')"
    ),
    email_errors.MultipartInvariantViolationDefect: "claims to be multipart but is not",
    email_errors.InvalidMultipartContentTransferEncodingDefect: (
        "is a multipart with a transfer encoding other than 7bit or 8bit"
    ),
    email_errors.MissingHeaderBodySeparatorDefect: (
        "has a header line that is not a field (no empty line before its body?)"
    ),
    email_errors.FirstHeaderLineIsContinuationDefect: "starts its header with a folded line",
    email_errors.MisplacedEnvelopeHeaderDefect: "has a mbox 'From ' line in its header",
}


def _walk(part: Message, path: str) -> Iterator[tuple[str, Message]]:
    yield path, part
    if part.is_multipart():
        children = part.get_payload()
        assert isinstance(children, list)
        for index, child in enumerate(children, 1):
            name = f"{path}.{index}" if path.startswith("part") else f"part {index}"
            yield from _walk(child, name)


def _problem(part: Message) -> str | None:
    for defect in part.defects:
        for kind, message in _DEFECTS.items():
            if isinstance(defect, kind):
                return message
    encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    if encoding not in ENCODINGS:
        return (
            f"has Content-Transfer-Encoding {encoding!r}; use 7bit, 8bit, quoted-printable "
            "or base64"
        )
    if part.is_multipart() or encoding == "8bit":
        return None
    payload = part.get_payload()
    # BytesParser keeps non-ASCII octets as surrogate escapes in the str payload.
    if isinstance(payload, str) and not payload.isascii():
        return f"holds 8-bit octets but declares Content-Transfer-Encoding {encoding}"
    return None


def check_mime(data: bytes) -> None:
    """Refuse ``data`` when its MIME structure is unsound (see the module docstring)."""
    try:
        parsed = BytesParser(policy=policy.compat32).parsebytes(data)
        for path, part in _walk(parsed, "message"):
            problem = _problem(part)
            if problem is not None:
                raise ValidationFailed.field(path, problem)
    except RecursionError:
        raise ValidationFailed.field(
            "message", "has multiparts nested too deeply to be read"
        ) from None
