"""The bounce parser: RFC 3464 reports and the quoted bounces of MTAs that send none."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from mailgate.domain.inbound import BounceAction, BounceFormat
from mailgate.inbound.dsn import MAX_BOUNCED_RECIPIENTS, normalise_message_id, parse_bounce
from mailgate.inbound.parse import parse_message, to_inbound
from mailgate.inbound.session import FetchedMail
from tests.inbound.bounces import exim_bounce, plain_mail, postfix_dsn, qmail_bounce

ORIGINAL = "<20261121095958.abc123@acme.example>"


def test_rfc3464_report_names_message_recipient_status_and_diagnostic() -> None:
    bounce = parse_bounce(parse_message(postfix_dsn(ORIGINAL)))
    assert bounce is not None
    assert bounce.format is BounceFormat.DSN
    assert bounce.original_message_id == ORIGINAL
    assert bounce.reporting_mta == "mx.example.org"
    [recipient] = bounce.recipients
    assert recipient.email == "gone@example.net"
    assert recipient.action is BounceAction.FAILED
    assert recipient.status == "5.1.1"
    assert recipient.code == 550
    assert recipient.diagnostic is not None
    assert recipient.diagnostic.startswith("550 5.1.1 <gone@example.net>: Recipient address")
    assert recipient.is_failure


def test_a_delayed_recipient_is_reported_but_is_no_failure() -> None:
    bounce = parse_bounce(parse_message(postfix_dsn(ORIGINAL, delayed="slow@example.net")))
    assert bounce is not None
    by_email = {r.email: r for r in bounce.recipients}
    assert set(by_email) == {"gone@example.net", "slow@example.net"}
    slow = by_email["slow@example.net"]
    assert slow.action is BounceAction.DELAYED
    assert slow.status == "4.4.1"
    assert not slow.is_failure


def test_a_failed_action_with_a_transient_status_is_no_permanent_failure() -> None:
    bounce = parse_bounce(parse_message(postfix_dsn(ORIGINAL, status="4.2.2")))
    assert bounce is not None
    assert bounce.recipients[0].status == "4.2.2"
    assert not bounce.recipients[0].is_failure


@pytest.mark.parametrize(
    ("sample", "status", "code"),
    [(exim_bounce, "5.1.1", 550), (qmail_bounce, "5.7.1", 550)],
    ids=["exim", "qmail"],
)
def test_quoted_bounces_yield_original_id_and_failed_recipient(
    sample: object, status: str, code: int
) -> None:
    assert callable(sample)
    bounce = parse_bounce(parse_message(sample(ORIGINAL)))
    assert bounce is not None
    assert bounce.format is BounceFormat.QUOTED
    assert bounce.original_message_id == ORIGINAL
    [recipient] = bounce.recipients
    assert recipient.email == "gone@example.net"
    assert recipient.action is BounceAction.FAILED
    assert recipient.status == status
    assert recipient.code == code
    assert recipient.diagnostic is not None and str(code) in recipient.diagnostic


def test_ordinary_mail_and_auto_replies_are_not_bounces() -> None:
    assert parse_bounce(parse_message(plain_mail("Hello", message_id="<1@x.example>"))) is None
    reply = plain_mail("Out of office: Your invoice", message_id="<2@x.example>")
    assert parse_bounce(parse_message(reply)) is None


def test_the_bounces_own_message_id_is_never_taken_for_the_original() -> None:
    raw = qmail_bounce(ORIGINAL).replace(b"Message-ID: " + ORIGINAL.encode(), b"X-Other: 1")
    bounce = parse_bounce(parse_message(raw))
    assert bounce is not None
    assert bounce.original_message_id is None
    assert [r.email for r in bounce.recipients] == ["gone@example.net"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b.example>", "<a@b.example>"),
        ("  <a@b.example> (comment)", "<a@b.example>"),
        ("a@b.example", "<a@b.example>"),
        ("not an id", None),
        ("", None),
        (None, None),
    ],
)
def test_message_ids_are_normalised(value: str | None, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


def test_header_fields_are_decoded_flattened_and_cut() -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.com>\r\n"
        b"Subject: =?utf-8?b?w4lsw6h2ZQ==?=\r\n  continued\r\n"
        b"Message-ID: <x@example.com>\r\n"
        b"Date: Sat, 21 Nov 2026 09:00:00 +0100\r\n\r\nbody\r\n"
    )
    when = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    item = to_inbound(
        FetchedMail(uid=7, size=len(raw), internal_date=when, raw=raw, truncated=False)
    )
    assert item.sender == "José <jose@example.com>"
    assert item.subject == "Élève continued"
    assert item.message_id == "<x@example.com>"
    assert item.date == when
    assert item.received_at == when
    assert item.bounce is None


def test_a_truncated_message_is_never_read_as_a_bounce() -> None:
    raw = postfix_dsn(ORIGINAL)
    header = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    item = to_inbound(
        FetchedMail(uid=1, size=len(raw), internal_date=None, raw=header, truncated=True)
    )
    assert item.truncated
    assert item.bounce is None
    assert item.subject == "Undelivered Mail Returned to Sender"


def test_malformed_input_does_not_raise() -> None:
    raw = b"From: \xff\xfe\r\nSubject: =?bogus?q?x?=\r\nDate: yesterday\r\n\r\n\x00\x01"
    item = to_inbound(
        FetchedMail(uid=1, size=len(raw), internal_date=None, raw=raw, truncated=False)
    )
    assert item.date is None
    assert "\x00" not in item.subject


def _hostile_bounce(body: str, *, failed_header: str = "gone@example.net") -> bytes:
    head = (
        "From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"X-Failed-Recipients: {failed_header}\r\nContent-Type: text/plain\r\n\r\n"
    )
    return (head + body.replace("\n", "\r\n")).encode()


@pytest.mark.parametrize(
    ("body", "failed_header"),
    [
        ("The following " + "address" * 30_000 + "\n", "gone@example.net"),
        ("<" + "@" * 30_000 + "\n", "gone@example.net"),
        ("Delivery failed.\n", "a" * 60_000 + " gone@example.net"),
        ("".join(f"<u{n}@example.net>\n" for n in range(20_000)), "gone@example.net"),
        (
            "The following addresses failed:\n\n" + "  u@example.net\n" * 20_000,
            "gone@example.net",
        ),
    ],
    ids=["exim-keywords", "angle-ats", "failed-header", "angle-lines", "exim-lines"],
)
def test_hostile_bounces_are_read_in_linear_time(body: str, failed_header: str) -> None:
    """Anyone can mail the inbox: a crafted bounce must not stall the sync (or the loop)."""
    raw = _hostile_bounce(body, failed_header=failed_header)
    started = time.monotonic()
    bounce = parse_bounce(parse_message(raw))
    assert time.monotonic() - started < 2
    assert bounce is not None
    assert 1 <= len(bounce.recipients) <= MAX_BOUNCED_RECIPIENTS
