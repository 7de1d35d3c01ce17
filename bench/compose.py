"""Cost of validating and composing typical messages, in microseconds per message.

Run: ``.venv/bin/python bench/compose.py``. Loops are bounded (a few thousand iterations
per case); the figures are the best of several repeats, to keep scheduler noise out.
"""

from __future__ import annotations

import base64
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from mailgate.compose.drafts import make_draft
from mailgate.compose.limits import check_limits
from mailgate.compose.message import Draft, compose, new_message_id

TEXT = (
    "Hello Jane,\n\nYour invoice INV-2024-0042 for March is ready. The amount of 129.00 EUR "
    "will be charged to your card ending in 4242 on 5 April.\n\n"
    "You can download the invoice from your account page at any time.\n\n"
    "Thank you for your business,\nThe Acme billing team\n"
)
HTML = (
    '<!doctype html><html><body style="font-family: sans-serif">'
    "<p>Hello Jane,</p><p>Your invoice <b>INV-2024-0042</b> for March is ready. The amount of "
    "<b>129.00&nbsp;EUR</b> will be charged to your card ending in 4242 on 5 April.</p>"
    '<p><a href="https://billing.acme.test/invoices/INV-2024-0042?utm_source=email">'
    "Download the invoice</a></p><p>Thank you for your business,<br>"
    "The Acme billing team</p></body></html>\n"
)
REQUEST: dict[str, object] = {
    "from_": {"email": "billing@acme.test", "name": "Acme Billing"},
    "to": ["jane.doe@example.com", {"email": "john@example.org", "name": "John Smith"}],
    "cc": ["accounts@example.com"],
    "subject": "Your invoice INV-2024-0042 is ready",
    "text": TEXT,
    "html": HTML,
    "headers": {"X-Campaign": "invoices-2024-03"},
}
UNICODE_REQUEST: dict[str, object] = {
    **REQUEST,
    "to": [{"email": "jörg@bücher.test", "name": "Jörg Müller"}],
    "subject": "Ihre Rechnung für März ist da",
    "text": TEXT.replace("Hello", "Grüß Gott"),
}
ATTACHMENT_REQUEST: dict[str, object] = {
    **REQUEST,
    "attachments": [
        {
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "content": base64.b64encode(bytes(range(256)) * 40).decode(),
        }
    ],
}
DATE = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
MESSAGE_ID = new_message_id("acme.test")


def best_us(function: Callable[[], object], *, number: int, repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, in µs per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def validate(request: dict[str, object]) -> Draft:
    draft = make_draft(**request)  # type: ignore[arg-type]
    check_limits(draft, max_recipients=50, max_bytes=10_000_000)
    return draft


def main() -> None:
    cases = {
        "typical text+html": REQUEST,
        "non-ASCII (IDN, UTF-8 local part)": UNICODE_REQUEST,
        "text+html + 10 KB attachment": ATTACHMENT_REQUEST,
    }
    print(f"{'case':40} {'validate µs':>12} {'compose µs':>11} {'size B':>8}")
    for name, request in cases.items():
        draft = validate(request)
        message = compose(draft, message_id=MESSAGE_ID, date=DATE)
        validate_us = best_us(lambda r=request: validate(r), number=2000)
        compose_us = best_us(
            lambda d=draft: compose(d, message_id=MESSAGE_ID, date=DATE), number=2000
        )
        print(f"{name:40} {validate_us:12.1f} {compose_us:11.1f} {len(message):8}")


if __name__ == "__main__":
    main()
