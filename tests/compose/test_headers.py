"""Custom header and subject validation, including the encoded-word trick."""

from __future__ import annotations

import pytest

from mailgate.compose.controls import encoded_word_problem
from mailgate.compose.headers import validate_headers, validate_subject
from mailgate.errors import ValidationFailed


def test_acceptable_headers_pass_unchanged() -> None:
    headers = {
        "X-Campaign": "7",
        "List-Unsubscribe": "<https://x.test/u/" + "a" * 500 + ">",
        "In-Reply-To": "<abc@x.test>",
        "X-Note": "Grüße =?utf-8?q?harmless?=",
    }
    assert validate_headers(headers) == headers
    assert validate_headers(None) == {}


RESERVED = [
    "From",
    "to",
    "CC",
    "Bcc",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Return-Path",
    "Received",
    "DKIM-Signature",
    "X-Mailgate-Original-Recipients",
    "x-mailgate-anything",
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_headers_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_headers({name: "x"})
    assert [e.field for e in caught.value.errors] == [f"headers.{name}"]
    assert "set by Mailgate" in caught.value.errors[0].message


BAD_HEADERS: list[tuple[dict[object, object], str, str]] = [
    ({"X-A": "1\r\nBcc: evil@x.test"}, "headers.X-A", "control"),
    ({"X-A": "1\nx"}, "headers.X-A", "control"),
    ({"X-A": "a\x00b"}, "headers.X-A", "control"),
    ({"X-A": "a\tb"}, "headers.X-A", "control"),
    ({"X-A": "a\x9bb"}, "headers.X-A", "control"),
    ({"X-A": "a\u2028b"}, "headers.X-A", "control"),
    ({"X-A": "=?utf-8?q?x=0D=0ABcc:_e@x.test?="}, "headers.X-A", "encoded-word"),
    ({"X-A": "=?utf-8?b?eA1CY2M6IGVAeC50ZXN0?="}, "headers.X-A", "encoded-word"),
    ({"X-A": "ok =?iso-8859-1?Q?=00?= ok"}, "headers.X-A", "encoded-word"),
    ({"X-A": "=?utf-8*en?Q?=0A?="}, "headers.X-A", "encoded-word"),
    ({"X-A": "=?utf-8?q?=C2=85?="}, "headers.X-A", "encoded-word"),
    ({"X-A": "=?x-unknown?q?=0D?="}, "headers.X-A", "encoded-word"),
    ({"X A": "1"}, "headers.X A", "header names"),
    ({"X:A": "1"}, "headers.X:A", "header names"),
    ({"": "1"}, "headers.", "header names"),
    ({"X-Ä": "1"}, "headers.X-Ä", "header names"),
    ({"X-\r\nA": "1"}, "headers.?", "header names"),
    ({"X-" + "a" * 80: "1"}, "headers.X-" + "a" * 80, "header names"),
    ({"X-A": 1}, "headers.X-A", "string"),
    ({"X-A": "a" * 4001}, "headers.X-A", "4000"),
    ({"X-A": "a" * 901}, "headers.X-A", "folded"),
]


@pytest.mark.parametrize(("headers", "field", "message"), BAD_HEADERS)
def test_bad_headers_name_the_field(
    headers: dict[object, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_headers(headers)
    assert [e.field for e in caught.value.errors] == [field]
    assert message in caught.value.errors[0].message


def test_every_bad_header_is_reported() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_headers({"From": "x", "X-Ok": "fine", "X-Bad": "\n", "x-ok": "dup"})
    assert [e.field for e in caught.value.errors] == [
        "headers.From",
        "headers.X-Bad",
        "headers.x-ok",
    ]


def test_headers_must_be_an_object() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_headers(["X-A: 1"])
    assert caught.value.errors[0].field == "headers"
    with pytest.raises(ValidationFailed):
        validate_headers({f"X-{n}": "1" for n in range(101)})


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("Hi\r\nBcc: evil@x.test", "control"),
        ("Hi\n", "control"),
        ("Hi\x00", "control"),
        ("Hi\u2029", "control"),
        ("=?utf-8?b?SGkNCkJjYzogZUB4LnRlc3Q=?=", "encoded-word"),
        ("=?UTF-8?Q?Hi=0A?=", "encoded-word"),
        ("x" * 2001, "2000"),
        (5, "string"),
    ],
)
def test_bad_subjects(subject: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_subject(subject)
    assert [e.field for e in caught.value.errors] == ["subject"]
    assert message in caught.value.errors[0].message


@pytest.mark.parametrize(
    "subject", ["", "Hello", "Grüße", "=?utf-8?q?caf=C3=A9?=", "=?utf-8?b?!!!?=", "x" * 1500]
)
def test_good_subjects(subject: str) -> None:
    assert validate_subject(subject) == subject


def test_encoded_words_without_controls_are_fine() -> None:
    assert encoded_word_problem("=?utf-8?b?Q2Fmw6k=?= and =?us-ascii?q?a_b?=") is None
    assert encoded_word_problem("not =? an encoded word ?=") is None


@pytest.mark.parametrize(
    "subject",
    ["=?base64?q?abc?=", "=?hex?b?zz?=", "=?zlib?q?x?=", "=?idna?q?=FF?=", "=?punycode?q?=FF?="],
)
def test_encoded_words_no_reader_can_decode_are_left_alone(subject: str) -> None:
    assert encoded_word_problem(subject) is None
    assert validate_subject(subject) == subject
