"""DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

Contract of :meth:`DkimSigner.sign`: given a complete RFC 5322 message with CRLF line
endings (the output of :func:`mailgate.compose.message.compose`, possibly S/MIME-signed), it
returns the same bytes with one ``DKIM-Signature`` field prepended. The field uses
``c=relaxed/relaxed``, signs the fields of :data:`SIGNED_HEADERS` that the message has (From
is mandatory) and over-signs :data:`OVERSIGNED_HEADERS`, and is folded with CRLF into lines
of at most 78 octets. Nothing else in the message changes.

Canonicalisation and hashing are done here, from RFC 6376 section 3.4 and 3.7; the
signature itself is OpenSSL's, through ``cryptography``. The private key is parsed once,
when the signer is built, so signing costs one hash pass over the message and one private
key operation (for RSA-2048 the private key operation dominates).

Key management: :func:`generate_key` makes a key pair and
:meth:`DkimKeyMaterial.dns_record` the TXT record (RFC 6376 section 3.6.1) to publish.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailgate.compose.signing_errors import SigningError, SigningFailure
from mailgate.errors import ValidationFailed

DkimAlgorithm = Literal["rsa", "ed25519"]

#: Fields signed when present, in this order (RFC 6376 section 5.4.1 recommends the
#: originator and content fields; RFC 8058 section 4 requires List-Unsubscribe-Post).
SIGNED_HEADERS: Final[tuple[str, ...]] = (
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
#: Fields named once more than they occur, present or not, so that a field of that name
#: added in transit breaks the signature (RFC 6376 section 8.15).
OVERSIGNED_HEADERS: Final[tuple[str, ...]] = ("From", "Reply-To", "Subject", "To", "Cc")

#: RSA keys shorter than this are refused (RFC 8301 section 3.2).
MIN_RSA_BITS: Final = 1024
# One TXT character-string holds at most 255 octets (RFC 1035 section 3.3.14).
_TXT_STRING_LIMIT: Final = 255
_FOLD_AT: Final = 78

# Tabs become spaces, then runs of spaces are halved until none is left: both are C loops,
# far cheaper than a regular expression on text with many runs of whitespace.
_TAB_TO_SPACE: Final = bytes.maketrans(b"\t", b" ")


def _squeeze(data: bytes) -> bytes:
    """Every run of WSP (SP and HTAB) in ``data`` as one SP."""
    if b"\t" in data:
        data = data.translate(_TAB_TO_SPACE)
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data


_SELECTOR: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_DOMAIN: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}"
)


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """One header field in the "relaxed" form of RFC 6376 section 3.4.2, CRLF included.

    ``value`` is everything after the colon, with its folding line breaks.
    """
    value = _squeeze(value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """The body in the "relaxed" form of RFC 6376 section 3.4.4 (``body`` uses CRLF).

    Runs of WSP become one SP, WSP at line ends goes, empty lines at the end go, and a
    non-empty body ends with CRLF; an empty body stays empty (RFC 6376 section 3.4.4 and
    erratum 1384).
    """
    body = _squeeze(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    # A last line without CRLF may still end in SP; then the empty lines at the end go.
    body = body.rstrip(b" ").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields (name, raw value with its folds) and the body of ``message``.

    Raises :class:`SigningError` when the message is not CRLF-only or has a malformed
    header line (RFC 5322 section 2.2).
    """
    if message.count(b"\n") != message.count(b"\r\n") or message.count(b"\r") != message.count(
        b"\r\n"
    ):
        raise SigningError(
            "the message must use CRLF line endings only", reason=SigningFailure.MALFORMED_MESSAGE
        )
    end = message.find(b"\r\n\r\n")
    if end < 0:
        head, body = message.removesuffix(b"\r\n"), b""
    else:
        head, body = message[:end], message[end + 4 :]
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise SigningError(
                f"malformed header line: {line[:40]!r}", reason=SigningFailure.MALFORMED_MESSAGE
            )
        fields.append((name, value))
    return fields, body


@dataclass(frozen=True, slots=True)
class DkimKeyMaterial:
    """A DKIM key pair: the PEM (PKCS#8) private key to store encrypted, and the public key
    as it goes into the ``p=`` tag (base64 SubjectPublicKeyInfo for RSA, RFC 6376 section
    3.6.1; the raw 32-octet key for Ed25519, RFC 8463 section 4)."""

    algorithm: DkimAlgorithm
    private_key_pem: str
    public_key: str

    def dns_record(self, selector: str, domain: str) -> tuple[str, str]:
        """The TXT record to publish: ``("s1._domainkey.example.com", "v=DKIM1; k=rsa; p=...")``.

        The value is the logical record, in one piece, which is what DNS hosting forms
        expect. In a zone file a value over 255 octets must be written as several quoted
        strings (RFC 6376 section 3.6.2.2: they are concatenated); see :func:`txt_strings`.
        """
        _check_selector(selector)
        return f"{selector}._domainkey.{domain}", (
            f"v=DKIM1; k={self.algorithm}; p={self.public_key}"
        )


def txt_strings(value: str) -> tuple[str, ...]:
    """``value`` cut into TXT character-strings of at most 255 octets (RFC 1035 3.3.14)."""
    return tuple(
        value[i : i + _TXT_STRING_LIMIT] for i in range(0, len(value), _TXT_STRING_LIMIT)
    ) or ("",)


def generate_key(*, algorithm: DkimAlgorithm = "rsa", bits: int = 2048) -> DkimKeyMaterial:
    """A new key pair. RSA keys are 2048 to 4096 bits (RFC 8301 section 3.2); ``bits`` is
    ignored for Ed25519."""
    if algorithm == "rsa":
        if not 2048 <= bits <= 4096:
            raise ValidationFailed.field("bits", "RSA keys must be 2048 to 4096 bits")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    elif algorithm == "ed25519":
        ed_key = ed25519.Ed25519PrivateKey.generate()
        public = ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        pem = ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        raise ValidationFailed.field("algorithm", "must be rsa or ed25519")
    return DkimKeyMaterial(algorithm, pem.decode("ascii"), base64.b64encode(public).decode())


def _check_selector(selector: str) -> None:
    if _SELECTOR.fullmatch(selector) is None or len(selector) > 63:
        raise ValidationFailed.field("selector", "must be DNS labels of letters, digits and -")


def _load_key(
    private_key_pem: str, algorithm: DkimAlgorithm
) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeError) as exc:
        # The library's message can quote the input; keep key material out of errors.
        raise ValidationFailed.field("private_key", "not an unencrypted PEM private key") from exc
    if algorithm == "rsa" and isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValidationFailed.field("private_key", "RSA keys under 1024 bits are refused")
        return key
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValidationFailed.field("private_key", f"not an {algorithm} private key")


def _fold(tags: Sequence[str]) -> str:
    """``DKIM-Signature: tag; tag; ...`` folded before tags (and inside ``h=`` at colons)
    into lines of at most 78 octets, each continuation starting with a tab
    (RFC 6376 section 3.2 allows FWS around tags and section 3.5 inside ``h=``)."""
    lines = ["DKIM-Signature:"]
    for index, tag in enumerate(tags):
        text = tag if index == len(tags) - 1 else tag + ";"
        pieces = [text]
        if tag.startswith("h=") and len(text) > _FOLD_AT - 2:
            names = text.split(":")
            pieces = [name + ":" for name in names[:-1]] + [names[-1]]
        for position, piece in enumerate(pieces):
            separator = "" if position else " "
            if len(lines[-1]) + len(separator) + len(piece) > _FOLD_AT:
                lines.append("\t" + piece)
            else:
                lines[-1] += separator + piece
    return "\r\n".join(lines)


class DkimSigner:
    """Signs messages for one ``d=`` domain and selector; build it once and reuse it.

    ``clock`` gives the ``t=`` timestamp (RFC 6376 section 3.5), in Unix seconds;
    ``expire_after`` adds ``x=`` that many seconds later. Raises
    :class:`~mailgate.errors.ValidationFailed` (``domain``, ``selector``, ``private_key``)
    when the configuration cannot sign.
    """

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key_pem: str,
        algorithm: DkimAlgorithm = "rsa",
        *,
        signed_headers: Sequence[str] = SIGNED_HEADERS,
        oversigned_headers: Collection[str] = OVERSIGNED_HEADERS,
        expire_after: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        domain = domain.rstrip(".").lower()
        if not domain.isascii():
            # d= holds the A-label form (RFC 6376 section 3.5, RFC 5890).
            try:
                domain = domain.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValidationFailed.field("domain", "not a valid domain") from exc
        if _DOMAIN.fullmatch(domain) is None:
            raise ValidationFailed.field("domain", "not a valid domain")
        _check_selector(selector)
        self.domain = domain
        self.selector = selector
        self.algorithm: DkimAlgorithm = algorithm
        self._key = _load_key(private_key_pem, algorithm)
        self._signed = tuple(dict.fromkeys(name.lower() for name in signed_headers))
        self._oversigned = frozenset(name.lower() for name in oversigned_headers)
        if "from" not in self._signed:
            raise ValidationFailed.field("signed_headers", "From must be signed")
        self._expire_after = expire_after
        self._clock = clock
        self._prefix = (
            f"v=1; a={algorithm}-sha256; c=relaxed/relaxed; d={domain}; s={selector}"
        ).split("; ")

    def _header_list(self, fields: Sequence[tuple[bytes, bytes]]) -> tuple[list[str], bytes]:
        """The ``h=`` names and the canonical octets of the fields they select, bottom-up
        for repeated names (RFC 6376 section 5.4.2)."""
        by_name: dict[str, list[tuple[bytes, bytes]]] = {}
        for raw_name, raw_value in fields:
            key = raw_name.strip(b" \t").decode("ascii", "replace").lower()
            by_name.setdefault(key, []).append((raw_name, raw_value))
        if "from" not in by_name:
            raise SigningError(
                "the message has no From field (RFC 6376 section 5.4)",
                reason=SigningFailure.MALFORMED_MESSAGE,
            )
        names: list[str] = []
        canonical: list[bytes] = []
        for name in self._signed:
            instances = by_name.get(name, [])
            for field_name, value in reversed(instances):
                names.append(name)
                canonical.append(relaxed_header(field_name, value))
            if name in self._oversigned:
                # A name listed once more than it occurs selects the null string.
                names.append(name)
        return names, b"".join(canonical)

    def sign(self, message: bytes) -> bytes:
        """``message`` with a ``DKIM-Signature`` field prepended (see the module contract).

        Raises :class:`SigningError` when the message is not CRLF-only, has a malformed
        header or no From field.
        """
        fields, body = split_message(message)
        names, signed_fields = self._header_list(fields)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        timestamp = int(self._clock())
        tags = [*self._prefix, f"t={timestamp}"]
        if self._expire_after is not None:
            tags.append(f"x={timestamp + self._expire_after}")
        tags += [f"h={':'.join(names)}", f"bh={body_hash}", "b="]
        unsigned = _fold(tags)
        # RFC 6376 section 3.7: the signature field itself is hashed last, canonicalised,
        # with an empty b= value and without its trailing CRLF.
        name, _, value = unsigned.encode("ascii").partition(b":")
        data = signed_fields + relaxed_header(name, value)[:-2]
        signature = self._sign(data)
        return (unsigned + _fold_signature(signature, unsigned) + "\r\n").encode() + message

    def _sign(self, data: bytes) -> str:
        if isinstance(self._key, rsa.RSAPrivateKey):
            raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            # RFC 8463 section 3: Ed25519 signs the SHA-256 hash of the data.
            raw = self._key.sign(hashlib.sha256(data).digest())
        return base64.b64encode(raw).decode("ascii")


def _fold_signature(signature: str, unsigned: str) -> str:
    """The base64 signature cut to continue the last line of ``unsigned`` (which ends in
    ``b=``) and then to lines of at most 78 octets (FWS may appear anywhere in b=,
    RFC 6376 section 3.5)."""
    room = max(_FOLD_AT - len(unsigned.rsplit("\r\n", 1)[-1]), 0)
    chunks = [signature[:room]] if room else [""]
    rest = signature[room:]
    width = _FOLD_AT - 1
    chunks += ["\r\n\t" + rest[i : i + width] for i in range(0, len(rest), width)]
    return "".join(chunks)
