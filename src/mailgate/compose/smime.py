"""S/MIME detached signatures (RFC 8551 section 3.5) and PKCS#12 keystores (RFC 7292).

Contract of :func:`smime_sign`: given a composed message (CRLF, 7-bit body, as
:func:`mailgate.compose.message.compose` makes it), it returns a message whose top-level
fields are the original ones except the ``Content-*`` fields, and whose body is a
``multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256`` entity
(RFC 1847 section 2.1) of two parts: the original MIME entity (its ``Content-*`` fields
and body, byte for byte) and a detached CMS signature over exactly those bytes. The output
is CRLF, 7-bit clean and has no line over 998 octets. On any problem it raises
:class:`~mailgate.compose.signing_errors.SigningError` and never returns unsigned mail.

Keystores: :func:`load_pkcs12` reads a PKCS#12 file into a :class:`Keystore` and
:func:`select_entry` picks the entry for an alias (the first one for a blank alias).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailgate.compose.dkim import split_message
from mailgate.compose.signing_errors import SigningError, SigningFailure
from mailgate.errors import ValidationFailed

#: The private keys a CMS signature can be made with here.
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_PREAMBLE: Final = b"This is an S/MIME signed message.\r\n"
_SIGNATURE_HEADERS: Final = (
    b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
    b"Content-Description: S/MIME Cryptographic Signature\r\n"
)
_DEFAULT_CONTENT_TYPE: Final = b"Content-Type: text/plain; charset=us-ascii\r\n"


@dataclass(frozen=True, slots=True)
class KeystoreEntry:
    """One signing identity: a private key, its certificate and the chain to send along."""

    alias: str
    key: SigningKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """When the signing certificate expires (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def chain_not_after(self) -> tuple[datetime, ...]:
        """When each chain certificate expires (UTC), in chain order."""
        return tuple(cert.not_valid_after_utc for cert in self.chain)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class Keystore:
    """The entries of a keystore, in file order."""

    entries: tuple[KeystoreEntry, ...]

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(entry.alias for entry in self.entries)


def _looks_like_pkcs12(content: bytes) -> bool:
    """Whether ``content`` is a DER SEQUENCE starting with INTEGER 3, as the PFX of RFC 7292
    section 4 does; a file that is but does not open had a wrong password (or MAC)."""
    if len(content) < 8 or content[0] != 0x30:
        return False
    length, offset = content[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4:
            return False
        length, offset = int.from_bytes(content[2 : 2 + size], "big"), 2 + size
    return offset + length == len(content) and content[offset : offset + 3] == b"\x02\x01\x03"


def _common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) and value.strip() else None


def _same_key(key: SigningKey, certificate: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki)


def load_pkcs12(content: bytes, password: str | None) -> Keystore:
    """The keystore in a PKCS#12 file.

    The alias of an entry is the certificate's friendly name (RFC 7292 section 4.2), or its
    subject common name, or ``entry-1``. The entry's chain is every other certificate in
    the file. Raises :class:`~mailgate.errors.ValidationFailed` naming ``password`` for a
    wrong password, and ``content`` for a file that is not PKCS#12, holds no private key,
    or a key that cannot make S/MIME signatures (only RSA and EC keys can).
    """
    if not _looks_like_pkcs12(content):
        raise ValidationFailed.field("content", "not a PKCS#12 (.p12/.pfx) file")
    secret = password.encode() if password else None
    try:
        loaded = pkcs12.load_pkcs12(content, secret)
    except ValueError as exc:
        # Same exception for a bad MAC and for damaged inner data; the outer structure
        # parsed, so a wrong password is by far the likelier cause.
        raise ValidationFailed.field(
            "password", "the keystore could not be opened with this password"
        ) from exc
    key = loaded.key
    if key is None:
        raise ValidationFailed.field("content", "the keystore holds no private key")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValidationFailed.field("content", "only RSA and EC keys can sign S/MIME mail")
    certificates = [*([loaded.cert] if loaded.cert else []), *loaded.additional_certs]
    own = next((c for c in certificates if _same_key(key, c.certificate)), None)
    if own is None:
        raise ValidationFailed.field("content", "the keystore has no certificate for its key")
    friendly = own.friendly_name.decode("utf-8", "replace").strip() if own.friendly_name else ""
    alias = friendly or _common_name(own.certificate) or "entry-1"
    chain = tuple(c.certificate for c in certificates if c is not own)
    return Keystore((KeystoreEntry(alias, key, own.certificate, chain),))


def select_entry(keystore: Keystore, alias: str | None) -> KeystoreEntry:
    """The entry named ``alias`` (exact match first, then case-insensitive), or the first
    entry when ``alias`` is None or blank (SPEC section 3, "Signing")."""
    if not keystore.entries:
        raise ValidationFailed.field("alias", "the keystore has no entries")
    if alias is None or not alias.strip():
        return keystore.entries[0]
    for entry in keystore.entries:
        if entry.alias == alias:
            return entry
    folded = alias.strip().casefold()
    for entry in keystore.entries:
        if entry.alias.casefold() == folded:
            return entry
    known = ", ".join(repr(a) for a in keystore.aliases)
    raise ValidationFailed.field("alias", f"no entry named {alias!r}; the keystore holds {known}")


def _check_signer(key: object, certificate: x509.Certificate, now: datetime) -> SigningKey:
    """The key, once it is known to fit the certificate and the certificate to be usable."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    subject = certificate.subject.rfc4514_string()
    if now < certificate.not_valid_before_utc:
        raise SigningError(
            f"the certificate {subject} is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}",
            reason=SigningFailure.CERTIFICATE_NOT_YET_VALID,
        )
    if now > certificate.not_valid_after_utc:
        raise SigningError(
            f"the certificate {subject} expired on {certificate.not_valid_after_utc.isoformat()}",
            reason=SigningFailure.CERTIFICATE_EXPIRED,
        )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(
            "only RSA and EC keys can sign S/MIME mail", reason=SigningFailure.UNSUPPORTED_KEY
        )
    if not _same_key(key, certificate):
        raise SigningError(
            f"the private key does not belong to the certificate {subject}",
            reason=SigningFailure.KEY_MISMATCH,
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return key
    # RFC 8550 section 4.4.4: with an extended key usage, emailProtection must be in it.
    if not {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & {
        *usage
    }:
        raise SigningError(
            f"the certificate {subject} is not for email protection",
            reason=SigningFailure.CERTIFICATE_NOT_FOR_EMAIL,
        )
    return key


def _entity(fields: Sequence[tuple[bytes, bytes]], body: bytes) -> tuple[bytes, bytes]:
    """The top-level fields, and the MIME entity to sign (``Content-*`` fields and body)."""
    top: list[bytes] = []
    content: list[bytes] = []
    for name, value in fields:
        is_content = name.strip().lower().startswith(b"content-")
        (content if is_content else top).append(name + b":" + value + b"\r\n")
    if not any(line[:13].lower() == b"content-type:" for line in content):
        content.insert(0, _DEFAULT_CONTENT_TYPE)
    if not any(line[:13].lower() == b"mime-version:" for line in top):
        top.append(b"MIME-Version: 1.0\r\n")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    entity = b"".join(content) + b"\r\n" + body
    if not entity.isascii() or any(len(line) > 998 for line in entity.split(b"\r\n")):
        # RFC 8551 section 3.1.1: a signed entity must survive any transport unchanged.
        raise SigningError(
            "the MIME body must be 7-bit with lines of at most 998 octets before signing",
            reason=SigningFailure.MALFORMED_MESSAGE,
        )
    return b"".join(top), entity


def smime_sign(
    message: bytes,
    *,
    key: object,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    now: datetime,
) -> bytes:
    """``message`` as an S/MIME signed message (see the module contract).

    The signature is SHA-256 with the signer's certificate and ``chain`` embedded. Raises
    :class:`SigningError` when the certificate is not valid at ``now`` (timezone-aware),
    is not for email protection, the key is not RSA or EC or does not match the
    certificate, or the message is not CRLF with a 7-bit body.
    """
    signing_key = _check_signer(key, certificate, now)
    fields, body = split_message(message)
    top, entity = _entity(fields, body)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(entity)
    builder = builder.add_signer(certificate, signing_key, hashes.SHA256())
    for extra in chain:
        builder = builder.add_certificate(extra)
    # Binary: sign the entity's octets as they are; they are already canonical CRLF text
    # (RFC 8551 section 3.1.1), and any translation would break the signature.
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    signature = builder.sign(serialization.Encoding.DER, options)
    encoded = base64.encodebytes(signature).rstrip(b"\n").replace(b"\n", b"\r\n")
    # "=_" cannot occur in base64 or quoted-printable text, and a digest of the entity
    # makes the boundary unique (RFC 2046 section 5.1.1); still check, as 7bit text may.
    digest = hashlib.sha256(entity).hexdigest()
    boundary = b"=_smime_" + digest[:32].encode()
    counter = 0
    while b"--" + boundary in entity:
        counter += 1
        boundary = b"=_smime_" + digest[:32].encode() + b"_" + str(counter).encode()
    content_type = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b' micalg=sha-256; boundary="' + boundary + b'"\r\n'
    )
    delimiter = b"--" + boundary
    # RFC 2046 section 5.1.1: the CRLF before a delimiter belongs to the delimiter, so the
    # first part's content is the entity exactly as signed.
    return b"".join(
        (
            top,
            content_type,
            b"\r\n",
            _PREAMBLE,
            delimiter + b"\r\n",
            entity,
            b"\r\n" + delimiter + b"\r\n",
            _SIGNATURE_HEADERS,
            b"\r\n",
            encoded,
            b"\r\n" + delimiter + b"--\r\n",
        )
    )
