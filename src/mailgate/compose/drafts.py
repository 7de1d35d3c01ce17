"""Building a validated :class:`~mailgate.compose.message.Draft` from API input.

Contract: :func:`make_draft` takes the message fields as the API received them (strings,
``{email, name}`` objects, lists, base64 attachments) and returns a :class:`Draft`, or raises
one :class:`~mailgate.errors.ValidationFailed` that lists every invalid field of the message
(not only the first), named by its JSON path: ``from``, ``to[1]``, ``cc[0].name``,
``reply_to``, ``subject``, ``headers.X-Campaign``, ``attachments[0].filename``, ``text``.
When an attachment alone is over ``max_attachment_bytes`` the error is a
:class:`~mailgate.errors.TooLarge` (413) instead.

Limits that depend on instance settings (recipient count, total size) are checked by
:func:`mailgate.compose.limits.check_limits`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mailgate.compose.addresses import Address, parse_address, parse_addresses
from mailgate.compose.attachments import parse_attachment
from mailgate.compose.headers import validate_headers, validate_subject
from mailgate.compose.message import Attachment, Draft
from mailgate.errors import FieldError, TooLarge, ValidationFailed

_T = TypeVar("_T")
_P = ParamSpec("_P")


class _Collector:
    """Runs field validators and keeps every error instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.too_large = False

    def run(self, check: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """``check(*args, **kwargs)``, or None after recording its errors."""
        try:
            return check(*args, **kwargs)
        except ValidationFailed as exc:
            self.errors.extend(exc.errors or [FieldError("", exc.detail)])
            self.too_large = self.too_large or isinstance(exc, TooLarge)
            return None


def _body(value: object, field: str, collector: _Collector) -> str | None:
    if value is None or isinstance(value, str):
        return value
    collector.errors.append(FieldError(field, "must be a string"))
    return None


def _attachments(
    values: object, *, max_bytes: int | None, collector: _Collector
) -> tuple[Attachment, ...]:
    if values is None:
        return ()
    if not isinstance(values, list | tuple):
        collector.errors.append(FieldError("attachments", "must be a list"))
        return ()
    parsed: list[Attachment] = []
    seen_ids: set[str] = set()
    for index, value in enumerate(values):
        attachment = collector.run(parse_attachment, value, index=index, max_bytes=max_bytes)
        if attachment is None:
            continue
        if attachment.content_id is not None:
            if attachment.content_id in seen_ids:
                collector.errors.append(
                    FieldError(f"attachments[{index}].content_id", "duplicate content_id")
                )
            seen_ids.add(attachment.content_id)
        parsed.append(attachment)
    return tuple(parsed)


def make_draft(
    *,
    from_: object,
    to: object = None,
    cc: object = None,
    bcc: object = None,
    reply_to: object = None,
    subject: object = None,
    text: object = None,
    html: object = None,
    headers: object = None,
    attachments: object = None,
    max_attachment_bytes: int | None = None,
) -> Draft:
    """A validated draft, or one error naming every invalid field (see the module doc)."""
    collector = _Collector()
    sender: Address | None = None
    if from_ is None:
        collector.errors.append(FieldError("from", "is required"))
    else:
        sender = collector.run(parse_address, from_, field="from")
    recipients = {
        name: collector.run(parse_addresses, value, field=name) or ()
        for name, value in (("to", to), ("cc", cc), ("bcc", bcc), ("reply_to", reply_to))
    }
    if not (to or cc or bcc):
        collector.errors.append(FieldError("to", "at least one recipient (to, cc or bcc)"))
    checked_subject = collector.run(validate_subject, subject) or ""
    checked_text = _body(text, "text", collector)
    checked_html = _body(html, "html", collector)
    if text is None and html is None:
        collector.errors.append(FieldError("text", "give text, html or both"))
    checked_headers = collector.run(validate_headers, headers) or {}
    files = _attachments(attachments, max_bytes=max_attachment_bytes, collector=collector)
    if collector.errors or sender is None:
        error = TooLarge if collector.too_large else ValidationFailed
        fields = ", ".join(e.field for e in collector.errors)
        raise error(f"invalid message: {fields}", errors=collector.errors)
    return Draft(
        from_=sender,
        to=recipients["to"],
        cc=recipients["cc"],
        bcc=recipients["bcc"],
        reply_to=recipients["reply_to"],
        subject=checked_subject,
        text=checked_text,
        html=checked_html,
        headers=checked_headers,
        attachments=files,
    )
