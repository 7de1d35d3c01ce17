"""Validation of attachments as the API receives them (base64 content, filename, type).

Contract: :func:`parse_attachment` turns one API object ``{filename, content_type, content,
content_id?}`` into an :class:`~mailgate.compose.message.Attachment`, or raises
:class:`~mailgate.errors.ValidationFailed` listing every bad field as
``attachments[i].<field>`` (:class:`~mailgate.errors.TooLarge` when the content alone is
over the size limit).

Filenames are refused when empty, longer than 255 characters, ``.``/``..``, or when they
hold a control character or a path separator (``/`` or ``\\``): a filename names a file,
never a place. Non-ASCII filenames are fine; they go out RFC 2231 encoded.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Final

from mailgate.compose.controls import text_problem
from mailgate.compose.message import Attachment
from mailgate.errors import FieldError, TooLarge, ValidationFailed

#: Longest filename, in characters (common file systems allow 255).
MAX_FILENAME_LENGTH: Final = 255
#: The type of an attachment given without one (RFC 2046 section 4.5.1).
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

# RFC 2045 section 5.1: type "/" subtype, each a token, then optional "; attribute=value"
# parameters with token values. Composite types are refused: Mailgate builds the structure,
# and message/* bodies may not be base64 encoded (RFC 2046 section 5.2.1).
_TOKEN: Final = r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+"  # noqa: S105 - RFC 2045 token, not a secret
_CONTENT_TYPE: Final = re.compile(rf"({_TOKEN})/{_TOKEN}(?:; ?{_TOKEN}={_TOKEN})*")
# RFC 2392 content-id without the angle brackets: an id-left "@" id-right or a bare dot-atom.
_CONTENT_ID: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?:@[A-Za-z0-9.-]+)?")
_BASE64_WHITESPACE: Final = re.compile(r"[ \t\r\n]+")


def decode_attachment_content(value: object, *, field: str, max_bytes: int | None = None) -> bytes:
    """Decode standard base64 (RFC 4648 section 4, padding required, line breaks allowed).

    Raises :class:`ValidationFailed` naming ``field`` when the content is not base64, and
    :class:`TooLarge` before decoding when it would exceed ``max_bytes``.
    """
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be a base64 string")
    if "\n" in value or " " in value or "\r" in value or "\t" in value:
        value = _BASE64_WHITESPACE.sub("", value)
    if max_bytes is not None and len(value) // 4 * 3 > max_bytes + 2:
        raise TooLarge(
            f"{field}: larger than {max_bytes} bytes",
            errors=[FieldError(field, f"must be at most {max_bytes} bytes")],
        )
    if len(value) % 4:
        raise ValidationFailed.field(field, "is not valid base64 (length not a multiple of 4)")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.field(field, "is not valid base64") from None


def filename_problem(filename: str) -> str | None:
    """Why ``filename`` cannot name an attachment, or None."""
    if not filename.strip(" "):
        return "must not be empty"
    problem = text_problem(filename)
    if problem is not None:
        return problem
    if "/" in filename or "\\" in filename:
        return "must not contain path separators ('/' or '\\')"
    if filename in {".", ".."}:
        return "must name a file"
    if len(filename) > MAX_FILENAME_LENGTH:
        return f"must be at most {MAX_FILENAME_LENGTH} characters"
    return None


def content_type_problem(content_type: str) -> str | None:
    """Why ``content_type`` cannot label an attachment, or None."""
    match = _CONTENT_TYPE.fullmatch(content_type)
    if match is None:
        return "must be a media type such as application/pdf"
    if match.group(1).lower() in {"multipart", "message"}:
        return "multipart/* and message/* types cannot be attached; use application/octet-stream"
    return None


def parse_attachment(value: object, *, index: int, max_bytes: int | None = None) -> Attachment:
    """One API attachment object as an :class:`Attachment` (see the module docstring)."""
    prefix = f"attachments[{index}]"
    if not isinstance(value, Mapping):
        raise ValidationFailed.field(prefix, "must be an object")
    errors: list[FieldError] = []
    unknown = set(value) - {"filename", "content_type", "content", "content_id"}
    if unknown:
        errors.append(FieldError(prefix, f"unknown keys: {', '.join(sorted(map(str, unknown)))}"))
    filename = value.get("filename")
    if not isinstance(filename, str):
        errors.append(FieldError(f"{prefix}.filename", "is required and must be a string"))
    elif (problem := filename_problem(filename)) is not None:
        errors.append(FieldError(f"{prefix}.filename", problem))
    content_type = value.get("content_type") or DEFAULT_CONTENT_TYPE
    if not isinstance(content_type, str):
        errors.append(FieldError(f"{prefix}.content_type", "must be a string"))
    elif (problem := content_type_problem(content_type)) is not None:
        errors.append(FieldError(f"{prefix}.content_type", problem))
    content_id = value.get("content_id")
    if content_id is not None and (
        not isinstance(content_id, str) or _CONTENT_ID.fullmatch(content_id) is None
    ):
        errors.append(
            FieldError(f"{prefix}.content_id", "must be an id such as logo or logo@x.test")
        )
    content = b""
    try:
        content = decode_attachment_content(
            value.get("content"), field=f"{prefix}.content", max_bytes=max_bytes
        )
    except ValidationFailed as exc:
        if isinstance(exc, TooLarge):
            raise TooLarge(exc.detail, errors=errors + exc.errors) from None
        errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(f"{prefix}: invalid attachment", errors=errors)
    assert isinstance(filename, str)
    assert isinstance(content_type, str)
    assert content_id is None or isinstance(content_id, str)
    return Attachment(filename, content_type, content, content_id)
