"""S/MIME signing verified by the openssl command, PKCS#12 keystores, refusals."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailgate.compose.addresses import Address
from mailgate.compose.dkim import DkimSigner, generate_key
from mailgate.compose.message import Attachment, Draft, compose
from mailgate.compose.signing_errors import SigningError, SigningFailure
from mailgate.compose.smime import Keystore, load_pkcs12, select_entry, smime_sign
from mailgate.domain.smime import is_smime_signed
from mailgate.errors import ValidationFailed
from tests.support.tls import CA_KEY_USAGE

NOW = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@dataclass(frozen=True)
class Pki:
    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    key: rsa.RSAPrivateKey
    cert: x509.Certificate


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(
    pki_ca: tuple[rsa.RSAPrivateKey, x509.Certificate],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    common_name: str = "Acme Billing",
    valid_from: datetime = NOW - timedelta(days=30),
    valid_to: datetime = NOW + timedelta(days=365),
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION,
) -> x509.Certificate:
    ca_key, ca = pki_ca
    return (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("billing@acme.test")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Acme Test CA"))
        .issuer_name(name("Acme Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=3650))
        .not_valid_after(datetime.now(UTC) + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # openssl verifies at the real current time, so the signer's window covers it too.
    cert = issue(
        (ca_key, ca),
        key,
        valid_from=min(NOW, datetime.now(UTC)) - timedelta(days=1),
        valid_to=datetime.now(UTC) + timedelta(days=365),
    )
    return Pki(ca_key, ca, key, cert)


MESSAGES: dict[str, Draft] = {
    "text": Draft(
        from_=Address("billing@acme.test", "Acme Billing"),
        to=(Address("jane@x.test", "Jane Doe"),),
        subject="Your invoice",
        text="Hello Jane,\n.\nA line with only a dot, and one starting with one:\n.dot\n",
    ),
    "html and attachment": Draft(
        from_=Address("billing@acme.test"),
        to=(Address("jörg@bücher.test", "Jörg"),),
        subject="Grüße",
        text="Grüß Gott\n",
        html="<p>Grüß <b>Gott</b></p>\n",
        attachments=(Attachment("a.pdf", "application/pdf", bytes(range(256)) * 30),),
        headers={"X-Campaign": "march"},
    ),
}


def composed(case: str) -> bytes:
    return compose(MESSAGES[case], message_id="<abc@acme.test>", date=NOW)


def sign(pki: Pki, message: bytes, **overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "key": pki.key,
        "certificate": pki.cert,
        "chain": (pki.ca,),
        "now": NOW,
    }
    arguments.update(overrides)
    return smime_sign(message, **arguments)  # type: ignore[arg-type]


def openssl_verify(signed: bytes, pki: Pki, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca.public_bytes(serialization.Encoding.PEM))
    message_file = tmp_path / "message.eml"
    message_file.write_bytes(signed)
    return subprocess.run(
        [OPENSSL, "smime", "-verify", "-in", str(message_file), "-CAfile", str(ca_file)],
        capture_output=True,
        check=False,
        timeout=30,
    )


def smtp_round_trip(data: bytes) -> bytes:
    """What SMTP does to DATA (RFC 5321 section 4.5.2): dot-stuff, then unstuff."""
    lines = data.split(b"\r\n")
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    wire = b"\r\n".join(stuffed)
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in wire.split(b"\r\n"))


def assert_wire_safe(data: bytes) -> None:
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_structure(case: str, pki: Pki) -> None:
    original = composed(case)
    signed = sign(pki, original)
    top = signed.split(b"\r\n\r\n", 1)[0]
    assert_wire_safe(signed[signed.index(b"\r\n\r\n") :])
    assert signed[signed.index(b"\r\n\r\n") :].isascii()
    parsed = message_from_bytes(signed, policy=policy.default)
    assert parsed.get_content_type() == "multipart/signed"
    assert parsed.get_param("protocol") == "application/pkcs7-signature"
    assert parsed.get_param("micalg") == "sha-256"
    for field in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert top.count(f"\n{field}:".encode()) + top.startswith(field.encode()) == 1
    assert b"Content-Transfer-Encoding" not in top
    inner, signature = parsed.iter_parts()
    unsigned = message_from_bytes(original, policy=policy.default)
    assert inner.get_content_type() == unsigned.get_content_type()
    assert signature.get_content_type() == "application/pkcs7-signature"
    # The original Content-* fields and body are carried byte for byte.
    original_head, original_body = original.split(b"\r\n\r\n", 1)
    assert original_body in signed
    for line in original_head.split(b"\r\n"):
        if line.lower().startswith(b"content-"):
            assert line in signed


@needs_openssl
@pytest.mark.parametrize("case", sorted(MESSAGES))
@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(lambda data: data, id="as signed"),
        pytest.param(smtp_round_trip, id="through SMTP dot-stuffing"),
        pytest.param(lambda data: data.replace(b"\r\n", b"\n"), id="stored with LF"),
    ],
)
def test_openssl_verifies(
    case: str, transport: Callable[[bytes], bytes], pki: Pki, tmp_path: Path
) -> None:
    signed = sign(pki, composed(case))
    result = openssl_verify(transport(signed), pki, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr


@needs_openssl
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"Hello Jane", b"Hello June"), id="body"),
        pytest.param(
            lambda m: m.replace(b"Content-Type: text/plain", b"Content-Type: text/html"),
            id="inner field",
        ),
    ],
)
def test_tampering_breaks_verification(
    tamper: Callable[[bytes], bytes], pki: Pki, tmp_path: Path
) -> None:
    signed = sign(pki, composed("text"))
    assert openssl_verify(signed, pki, tmp_path).returncode == 0
    tampered = tamper(signed)
    assert tampered != signed
    assert openssl_verify(tampered, pki, tmp_path).returncode != 0


def test_ec_key_signs(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue((pki.ca_key, pki.ca), key)
    signed = smime_sign(composed("text"), key=key, certificate=cert, now=NOW)
    assert b"multipart/signed" in signed


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"valid_to": NOW - timedelta(days=1), "valid_from": NOW - timedelta(days=90)},
            SigningFailure.CERTIFICATE_EXPIRED,
        ),
        ({"valid_from": NOW + timedelta(days=1)}, SigningFailure.CERTIFICATE_NOT_YET_VALID),
        ({"usage": ExtendedKeyUsageOID.SERVER_AUTH}, SigningFailure.CERTIFICATE_NOT_FOR_EMAIL),
    ],
)
def test_unusable_certificate_is_refused(
    change: dict[str, object], reason: SigningFailure, pki: Pki
) -> None:
    cert = issue((pki.ca_key, pki.ca), pki.key, **change)  # type: ignore[arg-type]
    with pytest.raises(SigningError) as caught:
        sign(pki, composed("text"), certificate=cert)
    assert caught.value.reason is reason
    assert "Acme Billing" in str(caught.value)


def test_mismatched_or_unsupported_key_is_refused(pki: Pki) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SigningError, match="does not belong") as caught:
        sign(pki, composed("text"), key=other)
    assert caught.value.reason is SigningFailure.KEY_MISMATCH
    with pytest.raises(SigningError) as caught:
        sign(pki, composed("text"), key=ed25519.Ed25519PrivateKey.generate())
    assert caught.value.reason is SigningFailure.UNSUPPORTED_KEY


def test_8bit_body_is_refused(pki: Pki) -> None:
    message = b"From: a@acme.test\r\nContent-Type: text/plain\r\n\r\nGr\xc3\xbc\xc3\x9f\r\n"
    with pytest.raises(SigningError, match="7-bit") as caught:
        sign(pki, message)
    assert caught.value.reason is SigningFailure.MALFORMED_MESSAGE


def p12(pki: Pki, *, password: bytes | None, friendly: bytes | None = b"billing") -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(friendly, pki.key, pki.cert, [pki.ca], encryption)


def test_load_pkcs12(pki: Pki) -> None:
    keystore = load_pkcs12(p12(pki, password=b"s3cret"), "s3cret")
    assert keystore.aliases == ("billing",)
    entry = keystore.entries[0]
    assert entry.certificate == pki.cert
    assert entry.chain == (pki.ca,)
    assert entry.not_after == pki.cert.not_valid_after_utc
    assert entry.chain_not_after == (pki.ca.not_valid_after_utc,)
    assert entry.subject == "CN=Acme Billing"
    signed = smime_sign(
        composed("text"), key=entry.key, certificate=entry.certificate, chain=entry.chain, now=NOW
    )
    assert b"application/pkcs7-signature" in signed


def test_alias_falls_back_to_common_name_and_no_password(pki: Pki) -> None:
    keystore = load_pkcs12(p12(pki, password=None, friendly=None), None)
    assert keystore.aliases == ("Acme Billing",)


@pytest.mark.parametrize("password", ["wrong", "", None])
def test_wrong_password_names_password(password: str | None, pki: Pki) -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_pkcs12(p12(pki, password=b"s3cret"), password)
    assert [error.field for error in caught.value.errors] == ["password"]
    assert "s3cret" not in caught.value.detail
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "content",
    [b"", b"not a keystore at all", b"-----BEGIN CERTIFICATE-----\nMII\n", b"\x30\x03\x02\x01\x03"],
)
def test_corrupt_content_names_content(content: bytes) -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_pkcs12(content, "x")
    assert [error.field for error in caught.value.errors] == ["content"]


def test_truststore_without_key_names_content(pki: Pki) -> None:
    truststore = pkcs12.serialize_key_and_certificates(
        None, None, None, [pki.ca], serialization.NoEncryption()
    )
    with pytest.raises(ValidationFailed, match="no private key"):
        load_pkcs12(truststore, None)


def test_select_entry(pki: Pki) -> None:
    keystore = load_pkcs12(p12(pki, password=None), None)
    first = keystore.entries[0]
    assert select_entry(keystore, None) is first
    assert select_entry(keystore, "  ") is first
    assert select_entry(keystore, "billing") is first
    assert select_entry(keystore, "BILLING") is first
    with pytest.raises(ValidationFailed, match="'billing'") as caught:
        select_entry(keystore, "marketing")
    assert [error.field for error in caught.value.errors] == ["alias"]
    with pytest.raises(ValidationFailed):
        select_entry(Keystore(()), None)


@needs_openssl
def test_dkim_applied_last_keeps_both_signatures_valid(pki: Pki, tmp_path: Path) -> None:
    material = generate_key()
    dkim_signed = DkimSigner("acme.test", "s1", material.private_key_pem).sign(
        sign(pki, composed("html and attachment"))
    )
    record = material.dns_record("s1", "acme.test")[1].encode()
    assert dkim.verify(dkim_signed, dnsfunc=lambda name, timeout=5: record)
    result = openssl_verify(smtp_round_trip(dkim_signed), pki, tmp_path)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_signed_mail_is_recognised(case: str, pki: Pki) -> None:
    plain = composed(case)
    assert not is_smime_signed(plain)
    assert is_smime_signed(sign(pki, plain))


def test_a_signature_inside_the_body_is_not_the_message_being_signed(pki: Pki) -> None:
    """Only the top-level header counts: a forwarded signed message stays an ordinary one."""
    inner = sign(pki, composed(sorted(MESSAGES)[0]))
    forwarded = b"From: a@acme.test\r\nSubject: Fwd\r\nContent-Type: text/plain\r\n\r\n" + inner
    assert not is_smime_signed(forwarded)
    folded = (
        b"From: a@acme.test\r\nContent-Type: multipart/signed;\r\n micalg=sha-256;\r\n"
        b' protocol="application/pkcs7-signature"; boundary="b"\r\n\r\n--b--\r\n'
    )
    assert is_smime_signed(folded)
