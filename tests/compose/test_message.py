"""Composed messages: wire shape, MIME structure, round trip through the email parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from mailgate.compose.addresses import Address
from mailgate.compose.message import (
    Attachment,
    Draft,
    compose,
    format_date,
    new_message_id,
)

DATE = datetime(2024, 3, 31, 12, 0, 5, tzinfo=UTC)
MID = "<0123456789abcdef@acme.test>"
SENDER = Address("noreply@acme.test", "Acme")
JANE = Address("jane@x.test", "Jane Doe")
FIXED = {"message_id": MID, "date": DATE}
PNG = bytes(range(256)) * 3

HOSTILE_BODIES = [
    "line one\n.\nline three",
    "a\r.\r\nb",
    "a\n.\r\nb",
    ".",
    ".\n",
    "start\r\rbare cr\rend",
    "x" * 5000,
    "word " * 1000,
    "trailing spaces   \nand\ttabs\t\n",
    "From the start\n>From quoted\n",
    "héllo wörld\n" * 3,
    "日本語のテキスト。" * 200,
    "nul\x00and\x0bvertical\x0cfeed",
    "--=_mg boundary-looking\n",
    "",
]


def wire_lines(data: bytes) -> list[bytes]:
    """The lines of ``data``, after checking that every line ends in CRLF."""
    assert data.endswith(b"\r\n")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\n" not in data.replace(b"\r\n", b"")
    return data[:-2].split(b"\r\n")


def assert_wire_safe(data: bytes) -> None:
    for line in wire_lines(data):
        assert len(line) <= 998


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def expected_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def content(message: EmailMessage, content_type: str) -> str:
    part = message.get_body(preferencelist=(content_type.split("/")[1],))
    assert part is not None
    assert part.get_content_type() == content_type
    value = part.get_content()
    assert isinstance(value, str)
    # The parser keeps the wire's CRLF in 7bit bodies; decoded bodies come back with LF.
    return value.replace("\r\n", "\n")


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_text_bodies_are_wire_safe_and_round_trip(body: str) -> None:
    draft = Draft(from_=SENDER, to=(JANE,), subject="s", text=body, html=f"<p>{body}</p>")
    data = compose(draft, message_id=MID, date=DATE)
    assert_wire_safe(data)
    assert data.isascii()
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    assert content(message, "text/plain") == expected_text(body)
    assert content(message, "text/html") == expected_text(f"<p>{body}</p>")


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_single_part_bodies_round_trip(body: str) -> None:
    draft = Draft(from_=SENDER, to=(JANE,), text=body)
    data = compose(draft, message_id=MID, date=DATE)
    assert_wire_safe(data)
    message = parse(data)
    assert message.get_content_type() == "text/plain"
    parsed = content(message, "text/plain")
    expected = expected_text(body)
    # A body at the end of the message is closed with a line break.
    assert parsed in {expected, expected + "\n"}


def test_headers_and_no_bcc() -> None:
    draft = Draft(
        from_=SENDER,
        to=(JANE, Address("b@x.test")),
        cc=(Address("c@x.test", "Doe, C"),),
        bcc=(Address("secret@x.test", "Secret"),),
        reply_to=(Address("help@acme.test"),),
        subject="Hello",
        text="hi",
        headers={"X-Campaign": "7"},
    )
    data = compose(draft, message_id=MID, date=DATE)
    assert b"secret" not in data.lower()
    assert b"bcc" not in data.lower()
    message = parse(data)
    assert message["From"] == "Acme <noreply@acme.test>"
    assert message["To"] == "Jane Doe <jane@x.test>, b@x.test"
    assert message["Cc"] == '"Doe, C" <c@x.test>'
    assert message["Reply-To"] == "help@acme.test"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == MID
    assert message["MIME-Version"] == "1.0"
    assert message["X-Campaign"] == "7"
    assert message["Date"].datetime == DATE
    assert "X-Mailgate-Original-Recipients" not in message


def test_original_recipients_header() -> None:
    draft = Draft(from_=SENDER, to=(Address("tester@acme.test"),), text="hi")
    original = (JANE, Address("c@x.test"))
    data = compose(draft, message_id=MID, date=DATE, original_recipients=original)
    message = parse(data)
    assert message["X-Mailgate-Original-Recipients"] == "Jane Doe <jane@x.test>, c@x.test"
    assert message["To"] == "tester@acme.test"


def test_extra_headers_are_written_and_checked() -> None:
    draft = Draft(from_=SENDER, to=(JANE,), text="hi")
    data = compose(draft, message_id=MID, date=DATE, extra_headers=[("X-Mailgate-Id", "m1")])
    assert parse(data)["X-Mailgate-Id"] == "m1"
    with pytest.raises(ValueError, match="header name"):
        compose(draft, message_id=MID, date=DATE, extra_headers=[("Bad Name", "v")])
    with pytest.raises(ValueError, match="control"):
        compose(draft, message_id=MID, date=DATE, extra_headers=[("X-A", "a\r\nb")])


def test_non_ascii_headers_are_encoded_and_round_trip() -> None:
    subject = "Grüße aus Köln — " + "lange Betreffzeile " * 12
    draft = Draft(
        from_=Address("noreply@acme.test", "Äcme GmbH"),
        to=(Address("jorg@bücher.test", "Jörg Müller"),),
        subject=subject,
        text="hi",
        headers={"X-Note": "naïve"},
    )
    data = compose(draft, message_id=MID, date=DATE)
    assert data.isascii()
    assert_wire_safe(data)
    assert max(len(line) for line in wire_lines(data.split(b"\r\n\r\n")[0] + b"\r\n")) <= 78
    message = parse(data)
    assert message["Subject"] == subject
    assert message["From"].addresses[0].display_name == "Äcme GmbH"
    assert message["To"].addresses[0].display_name == "Jörg Müller"
    assert message["To"].addresses[0].addr_spec == "jorg@xn--bcher-kva.test"
    assert message["X-Note"] == "naïve"
    assert not draft.needs_smtputf8


def test_utf8_local_part_is_written_as_utf8_and_flags_smtputf8() -> None:
    draft = Draft(from_=SENDER, to=(JANE,), bcc=(Address("jörg@x.test"),), text="hi")
    assert draft.needs_smtputf8
    assert b"j\xc3\xb6rg" not in compose(draft, message_id=MID, date=DATE)
    draft = Draft(from_=SENDER, to=(Address("jörg@x.test", "Jörg"),), text="hi")
    data = compose(draft, message_id=MID, date=DATE)
    assert "<jörg@x.test>".encode() in data
    # RFC 6532 headers are UTF-8; the bytes parser would read them as surrogate escapes.
    message = message_from_string(data.decode(), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "jörg@x.test"


def test_long_headers_fold() -> None:
    to = tuple(Address(f"user{n}@example.com", f"User Number {n}") for n in range(60))
    subject = " ".join(f"word{n}" for n in range(100))
    draft = Draft(from_=SENDER, to=to, subject=subject, text="hi")
    data = compose(draft, message_id=MID, date=DATE)
    head = data.split(b"\r\n\r\n")[0] + b"\r\n"
    assert max(len(line) for line in wire_lines(head)) <= 78
    message = parse(data)
    assert message["Subject"] == subject
    assert [a.addr_spec for a in message["To"].addresses] == [a.email for a in to]


def test_unbreakable_subject_is_encoded() -> None:
    draft = Draft(from_=SENDER, to=(JANE,), subject="x" * 1500, text="hi")
    data = compose(draft, message_id=MID, date=DATE)
    assert_wire_safe(data)
    assert parse(data)["Subject"] == "x" * 1500


def test_attachments_and_inline_images() -> None:
    report = "Bericht März 2024 — résumé " * 8 + ".pdf"
    draft = Draft(
        from_=SENDER,
        to=(JANE,),
        text="see attached",
        html='<p><img src="cid:logo@acme.test"></p>',
        attachments=(
            Attachment("a.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(300)),
            Attachment(report, "application/pdf", b"\x00\x01"),
            Attachment("logo.png", "image/png", PNG, content_id="logo@acme.test"),
            Attachment('we "quote".txt', "text/plain; charset=utf-8", b"a\r\nb\nc"),
        ),
    )
    data = compose(draft, message_id=MID, date=DATE)
    assert_wire_safe(data)
    assert data.isascii()
    message = parse(data)
    assert message.get_content_type() == "multipart/mixed"
    shape = [part.get_content_type() for part in message.walk()]
    assert shape == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
        "application/pdf",
        "text/plain",
    ]
    files = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(files) == {"a.pdf", report, 'we "quote".txt'}
    assert files["a.pdf"].get_content() == b"%PDF-1.4\n" + bytes(300)
    assert files[report].get_content() == b"\x00\x01"
    assert files['we "quote".txt'].get_payload(decode=True) == b"a\r\nb\nc"
    image = next(p for p in message.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo@acme.test>"
    assert image.get_content_disposition() == "inline"
    assert image.get_payload(decode=True) == PNG


@pytest.mark.parametrize(
    ("text", "html", "expected"),
    [
        ("t", None, "text/plain"),
        (None, "<p>h</p>", "text/html"),
        ("t", "<p>h</p>", "multipart/alternative"),
        (None, None, "text/plain"),
    ],
)
def test_body_shapes(text: str | None, html: str | None, expected: str) -> None:
    data = compose(Draft(from_=SENDER, to=(JANE,), text=text, html=html), message_id=MID, date=DATE)
    assert parse(data).get_content_type() == expected


def test_inline_image_without_html_is_an_attachment() -> None:
    image = Attachment("logo.png", "image/png", PNG, content_id="logo")
    draft = Draft(from_=SENDER, to=(JANE,), text="t", attachments=(image,))
    message = parse(compose(draft, message_id=MID, date=DATE))
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed",
        "text/plain",
        "image/png",
    ]


def test_composition_is_deterministic() -> None:
    draft = Draft(
        from_=SENDER,
        to=(JANE,),
        subject="Grüße",
        text="t",
        html="<p>h</p>",
        attachments=(Attachment("a.bin", "application/octet-stream", PNG),),
    )
    first = compose(draft, message_id=MID, date=DATE)
    assert compose(draft, message_id=MID, date=DATE) == first
    assert compose(draft, message_id="<other@acme.test>", date=DATE) != first


def test_boundary_collision_picks_another_boundary() -> None:
    draft = Draft(from_=SENDER, to=(JANE,), text="t", html="h")
    boundary = re.search(rb'boundary="([^"]+)"', compose(draft, message_id=MID, date=DATE))
    assert boundary is not None
    hostile = Draft(from_=SENDER, to=(JANE,), text=f"--{boundary[1].decode()}\n", html="h")
    data = compose(hostile, message_id=MID, date=DATE)
    assert boundary[1] not in data.split(b"\r\n\r\n")[0]
    assert content(parse(data), "text/plain") == f"--{boundary[1].decode()}\n"


@pytest.mark.parametrize(
    "date",
    [
        DATE,
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-8))),
    ],
)
def test_date_matches_the_email_package(date: datetime) -> None:
    assert format_date(date) == format_datetime(date)


def test_naive_date_and_bad_message_id_are_refused() -> None:
    draft = Draft(from_=SENDER, to=(JANE,), text="t")
    with pytest.raises(ValueError, match="timezone"):
        compose(draft, message_id=MID, date=datetime(2024, 1, 1))
    for bad in ["no-brackets@x.test", "<a b@x.test>", "<a@x.test>\r\nBcc: x", "<nohost>"]:
        with pytest.raises(ValueError, match="Message-ID"):
            compose(draft, message_id=bad, date=DATE)


def test_new_message_id() -> None:
    ids = {new_message_id("acme.test") for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"<[0-9a-f]{32}@acme\.test>", i) for i in ids)
    assert new_message_id("Bücher.test").endswith("@xn--bcher-kva.test>")
    for bad in ["", "a b", "x.test>", "-"]:
        with pytest.raises(ValueError, match="domain"):
            new_message_id(bad)


def test_date_is_written_per_zone_and_per_object() -> None:
    """The same instant in two zones is two texts, also when written one after the other
    (the date of a batch is written once and reused only for that very object)."""
    utc = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
    east = utc.astimezone(timezone(timedelta(hours=2)))
    assert utc == east
    assert format_date(utc) == "Sun, 31 Mar 2024 12:00:00 +0000"
    assert format_date(east) == "Sun, 31 Mar 2024 14:00:00 +0200"
    assert format_date(utc) == "Sun, 31 Mar 2024 12:00:00 +0000"
    with pytest.raises(ValueError, match="timezone"):
        format_date(datetime(2024, 3, 31, 12, 0))


def test_controls_in_an_ascii_body_make_it_quoted_printable() -> None:
    for control in ["\x00", "\x08", "\x0b", "\x1f", "\x7f"]:
        message = compose(Draft(from_=SENDER, to=(JANE,), text=f"a{control}b"), **FIXED)
        assert b"Content-Transfer-Encoding: quoted-printable" in message, repr(control)
    plain = compose(Draft(from_=SENDER, to=(JANE,), text="tab\there\nline two"), **FIXED)
    assert b"Content-Transfer-Encoding: 7bit" in plain
    assert plain.endswith(b"tab\there\r\nline two\r\n")


def test_new_message_id_checks_every_domain_it_is_given() -> None:
    assert new_message_id("Acme.TEST").endswith("@acme.test>")
    for _ in range(2):  # a refused domain stays refused
        with pytest.raises(ValueError, match="domain"):
            new_message_id("bad domain")
