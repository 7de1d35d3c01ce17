"""The strict reading of submitted messages, without a network: parser, header rules, MIME,
and the header rewrite for test lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailgate.compose import Address
from mailgate.domain.routing import Recipients, Routing
from mailgate.errors import ValidationFailed
from mailgate.services.raw_message import parse_message
from mailgate.services.raw_mime import check_mime
from mailgate.services.submit_headers import read_headers, split_addresses
from mailgate.services.submit_raw import Trace, rewrite_head

HEAD = b"From: a@acme.example\r\nTo: b@example.com\r\n"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_folded_fields_keep_their_octets_and_unfold_for_reading() -> None:
    data = HEAD + b"Subject: a long\r\n\tsubject line\r\nX-Id:  7 \r\n\r\nbody\r\n"
    parsed = parse_message(data)
    subject = parsed.named("subject")[0]
    assert subject.raw == b"Subject: a long\r\n\tsubject line\r\n"
    assert subject.value == "a long subject line"
    assert parsed.named("X-ID")[0].value == "7"
    assert parsed.body == b"body\r\n"
    assert [f.line for f in parsed.fields] == [1, 2, 3, 5]


def test_a_message_of_header_fields_only_has_an_empty_body() -> None:
    assert parse_message(HEAD).body == b""
    assert parse_message(HEAD + b"\r\n").body == b""


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"", "message", "is empty"),
        (HEAD + b"\r\nno final line break", "message", "must end with CRLF"),
        (b" From: a@acme.example\r\n\r\nb\r\n", "line 1", "must be a header field"),
        (b"\r\nbody\r\n", "line 1", "must be a header field"),
        (HEAD + b"Subject : hi\r\n\r\nb\r\n", "line 3", "is not a header field"),
        (HEAD + b": hi\r\n\r\nb\r\n", "line 3", "is not a header field"),
        (HEAD + b"Subject: hi\r\n \t\r\n\r\nb\r\n", "line 4", "whitespace only"),
        (HEAD + b"Subject: caf\xe9\r\n\r\nb\r\n", "Subject", "is not UTF-8"),
        (HEAD + b"X-A: \xc2\x85next line\r\n\r\nb\r\n", "X-A", "control characters"),
        (HEAD + b"X-A: \xe2\x80\xa8\r\n\r\nb\r\n", "X-A", "control characters"),
        (HEAD + b"\r\n" + b"b" * 999 + b"\r\n", "line 4", "longer than 998 octets"),
        (HEAD + b"\r\nok\r\n\x00\r\n", "line 5", "NUL"),
    ],
)
def test_parser_refuses(data: bytes, field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_message(data)
    [error] = refused.value.errors
    assert error.field == field and words in error.message


def test_998_octets_is_the_longest_line() -> None:
    assert parse_message(HEAD + b"\r\n" + b"b" * 998 + b"\r\n").body.startswith(b"bbb")


def test_utf8_headers_are_read_and_flagged() -> None:
    parsed = parse_message(HEAD + "Subject: Grüße\r\n\r\nb\r\n".encode())
    assert parsed.named("Subject")[0].value == "Grüße"
    assert parsed.eight_bit_headers
    assert not parse_message(HEAD + b"\r\nb\r\n").eight_bit_headers


def test_address_lists_split_outside_quotes_and_brackets() -> None:
    value = '"Doe, Jane" <j@x.test>, b@x.test,"Q \\"x, y\\"" <q@x.test>'
    assert split_addresses(value) == [
        '"Doe, Jane" <j@x.test>',
        "b@x.test",
        '"Q \\"x, y\\"" <q@x.test>',
    ]


def test_headers_say_who_and_what() -> None:
    data = (
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@acme.example>\r\n"
        b'To: "Doe, Jane" <jane@example.com>,\r\n bob@example.com\r\n'
        b"Cc: undisclosed-recipients:;\r\n"
        b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"
        b"X-Mailgate-App: billing\r\nx-mailgate-stage: production\r\n"
        b"Bcc: hidden@example.com\r\n\r\nb\r\n"
    )
    headers = read_headers(parse_message(data))
    assert headers.from_ == Address("joerg@acme.example", "Jörg")
    assert headers.to == (Address("jane@example.com", "Doe, Jane"), Address("bob@example.com"))
    assert headers.cc == ()
    assert headers.subject == "Grüße"
    assert (headers.app, headers.stage) == ("billing", "production")
    assert headers.message_id is None and not headers.has_date and not headers.has_reply_to
    assert [f.name for f in headers.kept] == ["From", "To", "Cc", "Subject"]


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (b"From: c@acme.example\r\n", "From", "appears 2 times"),
        (b"Cc: a@x.test, , b@x.test\r\n", "Cc", "empty entry"),
        (b"Cc: Team: a@x.test;\r\n", "Cc[0]", ""),
        (b"Reply-To: <a@x.test> trailing\r\n", "Reply-To[0]", "after the closing"),
        (b"Date: 1 Jan 2024 25:61:00 +0000\r\n", "Date", "RFC 5322 date-time"),
        (b"Message-ID: <" + b"x" * 250 + b"@acme.example>\r\n", "Message-ID", "255"),
        (b"Message-ID: <a b@acme.example>\r\n", "Message-ID", "msg-id"),
        (b"Return-Path: <a@acme.example>\r\n", "Return-Path", "final delivery server"),
        (b"X-Mailgate-App: a\r\nX-Mailgate-App: b\r\n", "X-Mailgate-App", "appears 2 times"),
        (b"Subject: " + b"\r\n ".join([b"word word word word"] * 120) + b"\r\n", "Subject", "2000"),
    ],
)
def test_header_rules(extra: bytes, field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        read_headers(parse_message(HEAD + extra + b"\r\nb\r\n"))
    assert [(e.field, words in e.message) for e in refused.value.errors] == [(field, True)]


def test_from_needs_exactly_one_mailbox() -> None:
    for value in (b"a@acme.example, b@acme.example", b"undisclosed-recipients:;"):
        with pytest.raises(ValidationFailed) as refused:
            read_headers(parse_message(b"From: " + value + b"\r\n\r\nb\r\n"))
        assert refused.value.errors[0].message == "must hold exactly one address"


@pytest.mark.parametrize(
    ("head", "body", "words"),
    [
        (b"Content-Transfer-Encoding: binary\r\n", b"x\r\n", "'binary'"),
        (b"Content-Transfer-Encoding: x-uuencode\r\n", b"x\r\n", "'x-uuencode'"),
        (b"Content-Type: multipart/mixed\r\n", b"x\r\n", "without a boundary"),
        (b"Content-Type: multipart/mixed; boundary=b\r\n", b"x\r\n", "never appears"),
        (
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh\xc3\xa9\r\n--b--\r\n",
            "part 1: holds 8-bit octets",
        ),
    ],
)
def test_mime_structure_is_checked(head: bytes, body: bytes, words: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_mime(HEAD + head + b"\r\n" + body)
    [error] = refused.value.errors
    assert words in f"{error.field}: {error.message}"


def test_sound_mime_passes() -> None:
    body = (
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nh\xc3\xa9\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )
    assert check_mime(HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body) is None


def _headers(data: bytes) -> list[str]:
    return [line.decode() for line in data.split(b"\r\n") if line]


def test_rewrite_for_a_test_list_without_a_to_field() -> None:
    headers = read_headers(parse_message(b"From: a@acme.example\r\nSubject: Hi\r\n\r\nb\r\n"))
    routing = Routing(
        recipients=("qa@test.example",),
        redirected=True,
        original=Recipients(bcc=("secret@example.com",)),
    )
    head = rewrite_head(
        headers, routing, message_id="<m@acme.example>", reply_to=None, received=None, now=NOW
    )
    assert _headers(head) == [
        "Date: Fri, 01 Mar 2024 12:00:00 +0000",
        "From: a@acme.example",
        "Subject: Hi",
        "To: qa@test.example",  # and no Original-Recipients: nobody but a Bcc was replaced
        "Message-ID: <m@acme.example>",
    ]


def test_rewrite_keeps_the_order_and_the_application_fields() -> None:
    headers = read_headers(
        parse_message(
            b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nFrom: a@acme.example\r\n"
            b"To: Ann <ann@example.com>\r\nCc: c@example.com\r\nX-Mailgate-App: billing\r\n"
            b"Message-ID: <app@acme.example>\r\n\r\nb\r\n"
        )
    )
    routing = Routing(
        recipients=("qa@test.example",),
        redirected=True,
        original=Recipients(to=("ann@example.com",), cc=("c@example.com",)),
    )
    trace = Trace(helo="app.test", peer="::1", by="mx.test", protocol="ESMTPA")
    head = rewrite_head(
        headers,
        routing,
        message_id="<unused@acme.example>",
        reply_to=Address("help@acme.example"),
        received=trace.received(id="0123", now=NOW),
        now=NOW,
    )
    assert _headers(head.replace(b"\r\n ", b" ")) == [
        "Received: from app.test ([IPv6:::1]) by mx.test with ESMTPA id 0123; Fri, 01 Mar 2024"
        " 12:00:00 +0000",
        "Date: Mon, 01 Jan 2024 10:00:00 +0000",
        "From: a@acme.example",
        "To: qa@test.example",
        "Message-ID: <app@acme.example>",
        "X-Mailgate-Original-Recipients: Ann <ann@example.com>, c@example.com",
        "Reply-To: help@acme.example",
    ]
