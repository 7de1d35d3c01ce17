"""A throwaway PKI for TLS tests: one CA, and server certificates it issues.

Usage::

    ca = TestCA(tmp_path)
    good = ca.issue("mail.mailgate.test")
    expired = ca.issue("mail.mailgate.test", expired=True)
    wrong = ca.issue("other.mailgate.test")
    server_context = good.server_context()
    ServerConfig(..., host="mail.mailgate.test", ca_certificates=ca.ca_pem)

Keys are EC P-256 (fast to make). Nothing is installed anywhere: clients trust the CA only
through the PEM they are given.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: What a CA's key may do: sign certificates and revocation lists (and its own signatures).
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A server certificate (chain) and its private key, as PEM files."""

    cert_file: Path
    key_file: Path

    def server_context(self, *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        if maximum_version is not None:
            context.maximum_version = maximum_version
        return context


class TestCA:
    """A certificate authority living in ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, *, name: str = "Mailgate Test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        #: The CA certificate as PEM text: what a server's ``ca_certificates`` holds.
        self.ca_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_text(self.ca_pem)

    def issue(self, host: str, *, expired: bool = False, label: str | None = None) -> CertFiles:
        """A server certificate for ``host`` (DNS or IP SAN); ``expired`` ended yesterday."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        if expired:
            not_before, not_after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = label or f"{host}{'-expired' if expired else ''}"
        cert_file = self.directory / f"{stem}.crt"
        key_file = self.directory / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return CertFiles(cert_file, key_file)


def _san(host: str) -> x509.GeneralName:
    import ipaddress

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
