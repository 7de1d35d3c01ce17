"""ARF feedback reports read as complaints (pure parsing, no server)."""

from __future__ import annotations

import json

from mailgate.inbound.arf import parse_complaint
from mailgate.inbound.dsn import parse_bounce
from mailgate.inbound.parse import parse_message, to_inbound
from mailgate.inbound.session import FetchedMail
from tests.inbound.bounces import postfix_dsn
from tests.suppressions.reports import arf_report


def test_an_arf_report_names_the_message_and_the_complainer() -> None:
    complaint = parse_complaint(parse_message(arf_report("<m1@acme.example>", rcpt="A@X.test")))
    assert complaint is not None
    assert complaint.feedback_type == "abuse" and complaint.is_complaint
    assert complaint.original_message_id == "<m1@acme.example>"
    assert complaint.recipients == ("a@x.test",)
    assert complaint.user_agent == "SomeGenerator/1.0"
    assert complaint.reporting_mta == "mail.mailbox.example.com"
    assert complaint.source_ip == "192.0.2.1"


def test_a_redacted_report_falls_back_to_the_returned_header() -> None:
    raw = arf_report("<m1@acme.example>", rcpt=None, to_header="Bob <bob@x.test>, c@x.test")
    complaint = parse_complaint(parse_message(raw))
    assert complaint is not None and complaint.recipients == ("bob@x.test", "c@x.test")


def test_not_spam_is_read_but_is_no_complaint_and_a_dsn_is_no_report() -> None:
    raw = arf_report("<m1@acme.example>", feedback_type="not-spam")
    complaint = parse_complaint(parse_message(raw))
    assert complaint is not None and not complaint.is_complaint
    assert parse_complaint(parse_message(postfix_dsn("<m1@acme.example>"))) is None


def test_a_fetched_report_is_a_complaint_never_a_bounce() -> None:
    # "FW: ..." from an abuse desk quoting "Undelivered"-like text would otherwise risk
    # being read as a quoted bounce.
    raw = arf_report("<m1@acme.example>").replace(b"FW: Your invoice", b"Undeliverable: spam")
    assert parse_bounce(parse_message(raw)) is not None  # what the bounce reader alone sees
    item = to_inbound(
        FetchedMail(uid=1, size=len(raw), internal_date=None, raw=raw, truncated=False)
    )
    assert item.bounce is None and item.complaint is not None
    assert dict(item.headers)["Subject"] == "Undeliverable: spam"


def test_raw_8bit_header_bytes_become_text_a_webhook_body_can_carry() -> None:
    raw = (
        b"From: J\xf6rg <j@example.org>\r\nSubject: Gr\xfc\xdfe \xe2\x82\xac\r\n"
        b"X-Odd: \xff\xfe\r\nMessage-ID: <x@example.org>\r\n\r\nHi\r\n"
    )
    item = to_inbound(
        FetchedMail(uid=1, size=len(raw), internal_date=None, raw=raw, truncated=False)
    )
    body = json.dumps(
        {"from": item.sender, "subject": item.subject, "headers": item.headers},
        ensure_ascii=False,
    ).encode("utf-8")
    assert item.subject.startswith("Gr") and b"\xef\xbf\xbd" in body  # U+FFFD, no surrogate
    assert ("X-Odd", "\ufffd\ufffd") in item.headers
