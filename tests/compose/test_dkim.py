"""DKIM signatures: canonicalisation against RFC 6376, verification by dkimpy, folding."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mailgate.compose.addresses import Address
from mailgate.compose.dkim import (
    DkimKeyMaterial,
    DkimSigner,
    generate_key,
    relaxed_body,
    relaxed_header,
    split_message,
    txt_strings,
)
from mailgate.compose.message import Attachment, Draft, compose
from mailgate.compose.signing_errors import SigningError, SigningFailure
from mailgate.errors import ValidationFailed

DATE = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
MID = "<0123456789abcdef@acme.test>"
SENDER = Address("noreply@acme.test", "Acme Billing")
JANE = Address("jane@x.test", "Jane Doe")
NOW = 1_711_886_400.0


@pytest.fixture(scope="module")
def rsa_key() -> DkimKeyMaterial:
    return generate_key()


@pytest.fixture(scope="module")
def ed_key() -> DkimKeyMaterial:
    return generate_key(algorithm="ed25519")


class _BadSignatureError(Exception):
    pass


class _VerifyKey:
    """PyNaCl's ``VerifyKey`` on top of ``cryptography``, for a dkimpy without PyNaCl."""

    def __init__(self, key: bytes, encoder: object) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key))

    def verify(self, message: bytes, signature: bytes) -> bytes:
        try:
            self._key.verify(signature, message)
        except InvalidSignature as exc:
            raise _BadSignatureError from exc
        return message


@pytest.fixture(autouse=True)
def ed25519_for_dkimpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy verifies Ed25519 through PyNaCl; without it, only that last primitive is
    replaced (dkimpy still parses, canonicalises and hashes on its own)."""
    if hasattr(dkim, "nacl"):
        return
    shim = SimpleNamespace(
        signing=SimpleNamespace(VerifyKey=_VerifyKey),
        encoding=SimpleNamespace(Base64Encoder=object()),
        exceptions=SimpleNamespace(BadSignatureError=_BadSignatureError, ValueError=ValueError),
    )
    monkeypatch.setattr(dkim, "nacl", shim, raising=False)


def verifies(message: bytes, key: DkimKeyMaterial, *, selector: str = "s1") -> bool:
    """dkimpy's verdict, with the TXT record of ``key`` published at ``selector``."""
    name, value = key.dns_record(selector, "acme.test")

    def dnsfunc(query: bytes | str, timeout: int = 5) -> bytes:
        asked = query.decode() if isinstance(query, bytes) else query
        return value.encode() if asked.rstrip(".") == name else b""

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def signer(key: DkimKeyMaterial, *, clock: Callable[[], float] = lambda: NOW) -> DkimSigner:
    return DkimSigner("acme.test", "s1", key.private_key_pem, key.algorithm, clock=clock)


def composed(**fields: object) -> bytes:
    draft = Draft(**{"from_": SENDER, "to": (JANE,), "subject": "Invoice", **fields})  # type: ignore[arg-type]
    return compose(draft, message_id=MID, date=DATE)


PNG = bytes(range(256)) * 20
MESSAGES: dict[str, bytes] = {
    "plain text": composed(text="Hello Jane,\n\nyour invoice is ready.\n"),
    "html and attachments": composed(
        text="Hello",
        html='<p>Hello <img src="cid:logo"></p>',
        attachments=(
            Attachment("logo.png", "image/png", PNG, content_id="logo"),
            Attachment("invoice.pdf", "application/pdf", PNG),
        ),
    ),
    "folded and odd whitespace": (
        b"From: Acme <noreply@acme.test>\r\n"
        b"To: a@x.test,\r\n\t b@x.test ,  \r\n   c@x.test\r\n"
        b"Subject:   spaced\t\tout   subject   \r\n"
        b"subject: a second, lower-case one\r\n"
        b"X-Long: " + b"word " * 40 + b"\r\n"
        b"\r\n"
        b"line with trailing space   \r\n\ttabbed\t \tline\r\n"
    ),
    "trailing empty lines": composed(text="body\n\n\n\n"),
    "empty body": b"From: noreply@acme.test\r\nSubject: nothing\r\n\r\n",
    "no body separator": b"From: noreply@acme.test\r\nSubject: nothing\r\n",
    "non-ASCII headers": composed(
        to=(Address("jörg@bücher.test", "Jörg Müller"),),
        subject="Grüße aus Köln",
        text="Grüß Gott\n",
    ),
}


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_signature_verifies_with_dkimpy(
    case: str, algorithm: str, rsa_key: DkimKeyMaterial, ed_key: DkimKeyMaterial
) -> None:
    key = rsa_key if algorithm == "rsa" else ed_key
    signed = signer(key).sign(MESSAGES[case])
    assert signed.endswith(MESSAGES[case])
    assert verifies(signed, key)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"your invoice", b"your lnvoice"), id="body"),
        pytest.param(lambda m: m + b"appended line\r\n", id="appended body"),
        pytest.param(lambda m: m.replace(b"Subject: Invoice", b"Subject: Invoicf"), id="subject"),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: evil@x.test\r\n\r\n", 1),
            id="added From (over-signed)",
        ),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\nReply-To: evil@x.test\r\n\r\n", 1),
            id="added Reply-To (over-signed)",
        ),
    ],
)
def test_tampered_message_fails_verification(
    tamper: Callable[[bytes], bytes], rsa_key: DkimKeyMaterial
) -> None:
    signed = signer(rsa_key).sign(MESSAGES["plain text"])
    assert verifies(signed, rsa_key)
    tampered = tamper(signed)
    assert tampered != signed
    assert not verifies(tampered, rsa_key)


def test_wrong_published_key_fails_verification(
    rsa_key: DkimKeyMaterial, ed_key: DkimKeyMaterial
) -> None:
    signed = signer(rsa_key).sign(MESSAGES["plain text"])
    assert not verifies(signed, generate_key())


def test_added_unsigned_header_keeps_signature_valid(rsa_key: DkimKeyMaterial) -> None:
    signed = signer(rsa_key).sign(MESSAGES["plain text"])
    assert verifies(b"Received: from relay.test by mx.test\r\n" + signed, rsa_key)


# RFC 6376 section 3.4.5, the example for relaxed canonicalisation.
RFC_EXAMPLE = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"


def test_rfc6376_example_relaxed_headers() -> None:
    fields, _ = split_message(RFC_EXAMPLE)
    assert [relaxed_header(name, value) for name, value in fields] == [
        b"a:X\r\n",
        b"b:Y Z\r\n",
    ]


def test_rfc6376_example_relaxed_body() -> None:
    _, body = split_message(RFC_EXAMPLE)
    assert relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n \r\n\t\r\n", b""),
        (b"text", b"text\r\n"),
        (b"text \t", b"text\r\n"),
        (b"a\r\n \r\n", b"a\r\n"),
        (b"a  b\t\tc \r\n\r\nd\r\n\r\n", b"a b c\r\n\r\nd\r\n"),
        (b"\tleading\r\n", b" leading\r\n"),
    ],
)
def test_relaxed_body_table(body: bytes, expected: bytes) -> None:
    assert relaxed_body(body) == expected


def test_empty_body_hash_is_hash_of_nothing(rsa_key: DkimKeyMaterial) -> None:
    signed = signer(rsa_key).sign(MESSAGES["empty body"])
    expected = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    assert f"bh={expected};".encode() in signed


def signature_field(signed: bytes) -> bytes:
    fields, _ = split_message(signed)
    name, value = fields[0]
    assert name == b"DKIM-Signature"
    return value


def tags(signed: bytes) -> dict[str, str]:
    value = re.sub(r"\s+", "", signature_field(signed).decode())
    return dict(tag.split("=", 1) for tag in value.split(";"))


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signature_field_is_folded_with_crlf(
    algorithm: str, rsa_key: DkimKeyMaterial, ed_key: DkimKeyMaterial
) -> None:
    key = rsa_key if algorithm == "rsa" else ed_key
    signed = signer(key).sign(MESSAGES["html and attachments"])
    head = signed[: signed.index(b"\r\nDate:") + 2]
    lines = head[:-2].split(b"\r\n")
    assert len(lines) > 1
    assert all(len(line) <= 78 for line in lines)
    assert all(line[:1] == b"\t" for line in lines[1:])
    assert b"\n" not in head.replace(b"\r\n", b"")


def test_tags(rsa_key: DkimKeyMaterial) -> None:
    signed = signer(rsa_key).sign(MESSAGES["html and attachments"])
    found = tags(signed)
    assert found["v"] == "1"
    assert found["a"] == "rsa-sha256"
    assert found["c"] == "relaxed/relaxed"
    assert (found["d"], found["s"], found["t"]) == ("acme.test", "s1", str(int(NOW)))
    names = found["h"].split(":")
    assert names[:2] == ["from", "from"]
    assert names.count("subject") == 2
    assert names.count("to") == 2
    assert {"date", "message-id", "mime-version", "content-type"} <= set(names)
    assert "x-mailgate-original-recipients" not in names


def test_only_present_fields_are_signed_besides_oversigning(rsa_key: DkimKeyMaterial) -> None:
    signed = signer(rsa_key).sign(MESSAGES["empty body"])
    assert tags(signed)["h"] == "from:from:reply-to:subject:subject:to:cc"


def test_expiry_and_deterministic_rsa_signature(rsa_key: DkimKeyMaterial) -> None:
    with_expiry = DkimSigner(
        "acme.test", "s1", rsa_key.private_key_pem, expire_after=3600, clock=lambda: NOW
    )
    signed = with_expiry.sign(MESSAGES["plain text"])
    assert tags(signed)["x"] == str(int(NOW) + 3600)
    # PKCS#1 v1.5 is deterministic: same message, same time, same bytes.
    assert signer(rsa_key).sign(MESSAGES["plain text"]) == signer(rsa_key).sign(
        MESSAGES["plain text"]
    )


def test_idn_domain_is_written_as_a_label(rsa_key: DkimKeyMaterial) -> None:
    signed = DkimSigner("bücher.test", "s1", rsa_key.private_key_pem, clock=lambda: NOW).sign(
        MESSAGES["plain text"]
    )
    assert tags(signed)["d"] == "xn--bcher-kva.test"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"To: a@x.test\r\nSubject: s\r\n\r\nbody\r\n", "no From field"),
        (b"From: a@acme.test\nSubject: s\n\nbody\n", "CRLF"),
        (b"From: a@acme.test\r\nSubject: s\r\n\r\nbare\rcr\r\n", "CRLF"),
        (b"From: a@acme.test\r\nnot a header\r\n\r\nbody\r\n", "malformed header"),
    ],
)
def test_unsignable_messages_raise(message: bytes, reason: str, rsa_key: DkimKeyMaterial) -> None:
    with pytest.raises(SigningError, match=reason) as caught:
        signer(rsa_key).sign(message)
    assert caught.value.reason is SigningFailure.MALFORMED_MESSAGE


def test_bad_configuration_is_refused(rsa_key: DkimKeyMaterial, ed_key: DkimKeyMaterial) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: DkimSigner("acme.test", "s1", "not a key"), "private_key"),
        (lambda: DkimSigner("acme.test", "s1", ed_key.private_key_pem, "rsa"), "private_key"),
        (lambda: DkimSigner("acme.test", "s1", rsa_key.private_key_pem, "ed25519"), "private_key"),
        (lambda: DkimSigner("acme..test", "s1", rsa_key.private_key_pem), "domain"),
        (lambda: DkimSigner("acme.test", "bad selector", rsa_key.private_key_pem), "selector"),
        (lambda: generate_key(bits=1024), "bits"),
        (
            lambda: DkimSigner("acme.test", "s1", rsa_key.private_key_pem, signed_headers=["To"]),
            "signed_headers",
        ),
    ]
    for build, field in cases:
        with pytest.raises(ValidationFailed) as caught:
            build()
        assert [error.field for error in caught.value.errors] == [field]
        assert "PRIVATE KEY" not in caught.value.detail


def test_dns_record_and_txt_strings(rsa_key: DkimKeyMaterial, ed_key: DkimKeyMaterial) -> None:
    name, value = rsa_key.dns_record("s1", "acme.test")
    assert name == "s1._domainkey.acme.test"
    assert value.startswith("v=DKIM1; k=rsa; p=MII")
    strings = txt_strings(value)
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == value
    name, value = ed_key.dns_record("mail2024", "acme.test")
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.rpartition("p=")[2])) == 32
    assert txt_strings(value) == (value,)
    assert rsa_key.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
