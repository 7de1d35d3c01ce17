"""Size and recipient limits of one message.

Contract: :func:`check_limits` returns None when ``draft`` is within the limits and raises
otherwise: :class:`~mailgate.errors.ValidationFailed` (422) naming ``to`` when there are more
recipients (To, Cc and Bcc together) than allowed, :class:`~mailgate.errors.TooLarge` (413)
naming the field at which the content first goes over ``max_bytes``.

The size counted is that of the content as given (UTF-8 text, HTML, decoded attachment
octets), not of the composed message, so that the limit a sender reads in an error is the
one they can act on. Transfer encoding adds about a third on top.
"""

from __future__ import annotations

from mailgate.compose.message import Draft
from mailgate.errors import FieldError, TooLarge, ValidationFailed


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _sized_fields(draft: Draft) -> list[tuple[str, int]]:
    """(field, octets) for every part of the content, in the order the API lists them."""
    sizes: list[tuple[str, int]] = []
    if draft.text is not None:
        sizes.append(("text", _octets(draft.text)))
    if draft.html is not None:
        sizes.append(("html", _octets(draft.html)))
    sizes.extend(
        (f"attachments[{index}].content", len(attachment.content))
        for index, attachment in enumerate(draft.attachments)
    )
    return sizes


def check_limits(draft: Draft, *, max_recipients: int, max_bytes: int) -> None:
    """Refuse a draft with too many recipients or too much content (see the module doc)."""
    count = len(draft.to) + len(draft.cc) + len(draft.bcc)
    if count > max_recipients:
        raise ValidationFailed.field(
            "to", f"{count} recipients (to, cc and bcc together); at most {max_recipients}"
        )
    total = 0
    for field, size in _sized_fields(draft):
        total += size
        if total > max_bytes:
            message = (
                f"the message content is {sum(s for _, s in _sized_fields(draft))} bytes "
                f"and goes over the limit of {max_bytes} bytes here"
            )
            raise TooLarge(f"{field}: {message}", errors=[FieldError(field, message)])
