"""Strict address parsing: accepted forms, every rejection rule, IDN and SMTPUTF8."""

from __future__ import annotations

import pytest
from email_validator import validate_email

from mailgate.compose.addresses import Address, _validate_addr_spec, parse_address, parse_addresses
from mailgate.errors import ValidationFailed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@x.test", Address("a@x.test")),
        ("  a@x.test ", Address("a@x.test")),
        ("A.B+tag@X.Test", Address("A.B+tag@x.test")),
        ("Jane <jane@x.test>", Address("jane@x.test", "Jane")),
        ("Jane Q. Doe <jane@x.test>", Address("jane@x.test", "Jane Q. Doe")),
        ('"Doe, Jane" <jane@x.test>', Address("jane@x.test", "Doe, Jane")),
        ('"a \\"quoted\\" name" <a@x.test>', Address("a@x.test", 'a "quoted" name')),
        ('"Jane" Doe <jane@x.test>', Address("jane@x.test", "Jane Doe")),
        ("<jane@x.test>", Address("jane@x.test")),
        ('"" <jane@x.test>', Address("jane@x.test")),
        ("Jörg <j@x.test>", Address("j@x.test", "Jörg")),
        ({"email": "b@x.test", "name": "B"}, Address("b@x.test", "B")),
        ({"email": "b@x.test"}, Address("b@x.test")),
        ({"email": "b@x.test", "name": "  "}, Address("b@x.test")),
        ("Postmaster@Example.com", Address("postmaster@example.com")),
    ],
)
def test_accepted_forms(value: object, expected: Address) -> None:
    assert parse_address(value, field="to[0]") == expected


REJECTED: list[tuple[object, str, str]] = [
    ("a@x.test\r\nBcc: evil@x.test", "to[0]", "control"),
    ("a@x.test\n", "to[0]", "control"),
    ("a\x00@x.test", "to[0]", "control"),
    ("Jane\x7f <a@x.test>", "to[0]", "control"),
    ("Jane\x85 <a@x.test>", "to[0]", "control"),
    ("Jane\u2028 <a@x.test>", "to[0]", "control"),
    ("Ja\tne <a@x.test>", "to[0]", "control"),
    ({"email": "a@x.test", "name": "Jane\r\nBcc: e@x.test"}, "to[0].name", "control"),
    ({"email": "a@x.test", "name": "Jane\u2029"}, "to[0].name", "control"),
    ({"email": "a@x.test\r\n", "name": "Jane"}, "to[0].email", "control"),
    ({"email": "a@x.test", "name": "=?utf-8?q?a=0D=0Ab?="}, "to[0].name", "encoded-word"),
    ("=?utf-8?b?SmFuZQ0KQmNjOiBl?= <a@x.test>", "to[0]", "encoded-word"),
    ("=?utf-8?q?a=40evil.com?=@dest.test", "to[0]", "RFC 2047 section 5"),
    ("Jane <=?utf-8?q?a=40evil.com?=@dest.test>", "to[0]", "RFC 2047 section 5"),
    ("x=?us-ascii?b?YQ==?=y@dest.test", "to[0]", "RFC 2047 section 5"),
    ({"email": "=?utf-8?q?a=40evil.com?=@dest.test"}, "to[0].email", "RFC 2047 section 5"),
    ("a@x.test, b@x.test", "to[0]", "valid email"),
    ("Jane <a@x.test>, Joe <b@x.test>", "to[0]", "after the closing"),
    ("Jane <a@x.test> trailing", "to[0]", "after the closing"),
    ("Jane <a@x.test", "to[0]", "Name <address>"),
    ("Jane <<a@x.test>>", "to[0]", "exactly one"),
    ("undisclosed-recipients:;", "to[0]", "valid email"),
    ("group: a@x.test;", "to[0]", "valid email"),
    ("a@x.test (Jane)", "to[0]", "valid email"),
    ("(comment) a@x.test", "to[0]", "valid email"),
    ("Jane (c) <a@x.test>", "to[0]", "display name"),
    ("a@x.test <b@x.test>", "to[0]", "display name"),
    ('"unterminated <a@x.test>', "to[0]", "unterminated"),
    ('"quoted"@x.test', "to[0]", "display name"),
    ("a@[127.0.0.1]", "to[0]", "valid email"),
    ("a@localhost", "to[0]", "valid email"),
    ("a@x.local", "to[0]", "valid email"),
    ("a..b@x.test", "to[0]", "valid email"),
    ("a@x..test", "to[0]", "valid email"),
    ("a@-x.test", "to[0]", "valid email"),
    ("a@x.123", "to[0]", "valid email"),
    ("@x.test", "to[0]", "valid email"),
    ("a@", "to[0]", "valid email"),
    ("", "to[0]", "valid email"),
    ("x" * 65 + "@x.test", "to[0]", "valid email"),
    ("a@" + "x" * 64 + ".test", "to[0]", "valid email"),
    ({"email": "Jane <a@x.test>"}, "to[0].email", "valid email"),
    ({"email": "a@x.test", "name": "x" * 257}, "to[0].name", "256"),
    ({"email": 7}, "to[0].email", "string"),
    ({"email": "a@x.test", "name": 7}, "to[0].name", "string"),
    ({"email": "a@x.test", "extra": 1}, "to[0]", "unknown"),
    (42, "to[0]", "address string"),
]


@pytest.mark.parametrize(("value", "field", "message"), REJECTED)
def test_rejections_name_the_field(value: object, field: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_address(value, field="to[0]")
    assert [e.field for e in caught.value.errors] == [field]
    assert message in caught.value.errors[0].message
    assert caught.value.status == 422


def test_list_reports_every_bad_entry() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_addresses(["ok@x.test", "bad", {"email": "c@x.test", "name": "\n"}], field="cc")
    assert [e.field for e in caught.value.errors] == ["cc[1]", "cc[2].name"]


def test_list_forms() -> None:
    assert parse_addresses(None, field="cc") == ()
    assert parse_addresses("a@x.test", field="reply_to") == (Address("a@x.test"),)
    with pytest.raises(ValidationFailed) as caught:
        parse_addresses("bad", field="reply_to")
    assert caught.value.errors[0].field == "reply_to"
    with pytest.raises(ValidationFailed):
        parse_addresses(5, field="cc")


def test_idn_domain_has_an_a_label() -> None:
    address = parse_address("Jörg <jorg@bücher.test>", field="to[0]")
    assert address.email == "jorg@bücher.test"
    assert address.ascii_email == "jorg@xn--bcher-kva.test"
    assert address.wire_email == "jorg@xn--bcher-kva.test"
    assert not address.needs_smtputf8


def test_a_label_input_is_normalised_to_unicode() -> None:
    address = parse_address("jorg@xn--bcher-kva.test", field="to[0]")
    assert address.email == "jorg@bücher.test"
    assert address.ascii_email == "jorg@xn--bcher-kva.test"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    address = parse_address("jörg@x.test", field="to[0]")
    assert address.needs_smtputf8
    assert address.ascii_email is None
    assert address.wire_email == "jörg@x.test"


ASCII_CORPUS = [
    "a@x.test",
    "a=?b@x.test",
    "A@X.TEST",
    "first.last@sub.example.com",
    "o'neil+tag@example.co.uk",
    "x!#$%&'*+/=?^_`{|}~-y@example.org",
    "a@x-y.z-z.com",
    "a@1x.com",
    "info@Example.com",
    "a@xn--bcher-kva.de",
    "a@ab--cd.com",
    "a@x.onion",
    "a@x.t1",
    "a." + "b" * 62 + "@x.test",
    "a" * 64 + "@x.test",
]


@pytest.mark.parametrize("value", ASCII_CORPUS)
def test_fast_path_agrees_with_email_validator(value: str) -> None:
    try:
        expected: str | None = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            test_environment=True,
            strict=True,
        ).normalized
    except ValueError:
        expected = None
    try:
        actual: str | None = _validate_addr_spec(value)
    except ValueError:
        actual = None
    assert actual == expected


def test_a_parsed_address_is_taken_as_is() -> None:
    parsed = parse_address({"email": "Jane@Example.COM", "name": "Jane"}, field="from")
    assert parse_address(parsed, field="from") is parsed
    assert parse_addresses([parsed, "john@example.com"], field="to")[0] is parsed
