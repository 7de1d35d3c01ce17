"""The pure verdicts of the sending-domain checks."""

from __future__ import annotations

import pytest

from mailgate.domain.domain_checks import (
    Status,
    alignment_check,
    dkim_check,
    dmarc_check,
    parse_tags,
    spf_mechanism,
    spf_with,
)


def test_tags_ignore_folding_whitespace() -> None:
    assert parse_tags("v=DKIM1; k=rsa;\r\n p=AB CD\tEF") == {
        "v": "DKIM1",
        "k": "rsa",
        "p": "ABCDEF",
    }


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "v=spf1 a:smtp.example ~all"),
        ("v=spf1 mx -all", "v=spf1 mx a:smtp.example -all"),
        ("v=spf1 redirect=_spf.example", "v=spf1 a:smtp.example redirect=_spf.example"),
        ("v=spf1 mx", "v=spf1 mx a:smtp.example"),
    ],
)
def test_spf_with_adds_the_term_before_all(existing: str | None, expected: str) -> None:
    assert spf_with(existing, "a:smtp.example") == expected


@pytest.mark.parametrize(
    ("engine", "host", "term"),
    [
        ("sendgrid", "", "include:sendgrid.net"),
        ("msgraph", "", "include:spf.protection.outlook.com"),
        ("smtp", "smtp.office365.com", "include:spf.protection.outlook.com"),
        ("smtp", "smtp.gmail.com", "include:_spf.google.com"),
        ("smtp", "Mail.Example.", "a:mail.example"),
    ],
)
def test_spf_mechanism_per_server(engine: str, host: str, term: str) -> None:
    assert spf_mechanism(engine, host) == term


def test_dkim_compares_the_public_key_only() -> None:
    expected = "v=DKIM1; k=rsa; p=KEY"
    assert dkim_check("n", expected, ["v=DKIM1; p=K E Y; t=s"]).status is Status.PASS
    assert dkim_check("n", expected, ["v=DKIM1; p="]).detail.startswith("The record revokes")
    assert dkim_check("n", expected, ["hello"]).status is Status.FAIL


def test_dmarc_reject_passes_and_returns_the_alignment_mode() -> None:
    check, adkim = dmarc_check("a.example", "_dmarc.a.example", ["v=DMARC1; p=reject; adkim=s"])
    assert check.status is Status.PASS and adkim == "s"
    two, _ = dmarc_check("a.example", "_dmarc.a.example", ["v=DMARC1; p=none"] * 2)
    assert two.status is Status.FAIL


def test_alignment() -> None:
    assert alignment_check("a.example", "a.example", "s").status is Status.PASS
    assert alignment_check("n.a.example", "a.example", "r").status is Status.PASS
    assert alignment_check("n.a.example", "a.example", "s").status is Status.FAIL
    assert alignment_check("a.example", None, "r").status is Status.FAIL
