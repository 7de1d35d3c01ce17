"""Cost of signing composed messages, in microseconds per message.

Run: ``.venv/bin/python bench/signing.py``. Cases: DKIM with RSA-2048 and Ed25519, S/MIME
with RSA-2048, on a ~2 KB and a ~20 KB message; for reference, the bare private key
operation (the floor of any signer) and dkimpy signing the same message. Loops are
bounded (a few hundred iterations); figures are the best of several repeats.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dkim
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from mailgate.compose.addresses import Address
from mailgate.compose.dkim import DkimSigner, generate_key
from mailgate.compose.message import Attachment, Draft, compose
from mailgate.compose.smime import smime_sign

NOW = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
PARAGRAPH = (
    "Your invoice INV-2024-0042 for March is ready. The amount of 129.00 EUR will be "
    "charged to your card ending in 4242 on 5 April.\n\n"
)


def message(size: int) -> bytes:
    """A text+HTML message (with an attachment for the large one) of about ``size`` bytes."""
    text = "Hello Jane,\n\n" + PARAGRAPH * 8
    html = "<p>" + PARAGRAPH.replace("\n\n", "</p><p>") * 4 + "</p>"
    attachments: tuple[Attachment, ...] = ()
    if size > 5000:
        attachments = (Attachment("invoice.pdf", "application/pdf", bytes(range(256)) * 52),)
    draft = Draft(
        from_=Address("billing@acme.test", "Acme Billing"),
        to=(Address("jane.doe@example.com", "Jane Doe"),),
        cc=(Address("accounts@example.com"),),
        subject="Your invoice INV-2024-0042 is ready",
        text=text,
        html=html,
        headers={"X-Campaign": "invoices-2024-03"},
        attachments=attachments,
    )
    return compose(draft, message_id="<0123456789abcdef@acme.test>", date=NOW)


def certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme Billing")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def best_us(function: Callable[[], object], *, number: int, repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, in µs per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    rsa_material = generate_key()
    ed_material = generate_key(algorithm="ed25519")
    rsa_signer = DkimSigner("acme.test", "s1", rsa_material.private_key_pem)
    ed_signer = DkimSigner("acme.test", "s2", ed_material.private_key_pem, "ed25519")
    smime_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    smime_cert = certificate(smime_key)
    raw_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raw_ed = ed25519.Ed25519PrivateKey.generate()
    digest = b"\x00" * 32

    print(f"{'case':44} {'2 KB µs':>10} {'20 KB µs':>10}")
    messages = (message(2000), message(20000))
    print(f"{'(message sizes in bytes)':44} {len(messages[0]):10} {len(messages[1]):10}")
    cases: dict[str, Callable[[bytes], object]] = {
        "DKIM rsa-sha256 (RSA-2048)": rsa_signer.sign,
        "DKIM ed25519-sha256": ed_signer.sign,
        "S/MIME detached, RSA-2048": lambda data: smime_sign(
            data, key=smime_key, certificate=smime_cert, now=NOW
        ),
        "  floor: one RSA-2048 signature": lambda data: raw_rsa.sign(
            digest, padding.PKCS1v15(), hashes.SHA256()
        ),
        "  floor: one Ed25519 signature": lambda data: raw_ed.sign(digest),
    }
    for name, sign in cases.items():
        figures = [best_us(lambda d=data, s=sign: s(d), number=200) for data in messages]
        print(f"{name:44} {figures[0]:10.1f} {figures[1]:10.1f}")
    pem = rsa_material.private_key_pem.encode()
    figures = [
        best_us(
            lambda d=data: dkim.sign(d, b"s1", b"acme.test", pem, linesep=b"\r\n"),
            number=20,
            repeat=3,
        )
        for data in messages
    ]
    print(f"{'  reference: dkimpy rsa-sha256':44} {figures[0]:10.1f} {figures[1]:10.1f}")


if __name__ == "__main__":
    main()
