"""Signing at acceptance, verified after the worker delivered over SMTP: DKIM with dkimpy,
S/MIME with ``openssl smime -verify``; refusals leave nothing queued; retries resend the
very same signed bytes; key rotation re-seals the signing secrets."""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailgate.engines.factory import EngineCache
from mailgate.services import routing_snapshot
from mailgate.settings import Settings
from mailgate.storage.rotation import reseal_all
from mailgate.storage.secretbox import SecretBox, generate_key
from tests.compose.test_dkim import ed25519_for_dkimpy  # noqa: F401 - autouse fixture
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, make_due
from tests.support.http_fakes import HttpResponse, HttpServer
from tests.support.smtp_servers import RawConnection, RawSmtpServer, free_port

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Signers and keystores are cached by row id; every test starts without them."""
    routing_snapshot.clear_caches()


# A small PKI ----------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Pki:
    ca: x509.Certificate
    ca_key: rsa.RSAPrivateKey

    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def pkcs12(
        self,
        password: str,
        *,
        friendly_name: str = "billing",
        valid_to: datetime | None = None,
        address: str = "noreply@acme.example",
    ) -> bytes:
        """A PKCS#12 file with a signing key, its certificate (issued by this CA) and
        the CA certificate."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Acme Billing"))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=30))
            .not_valid_after(valid_to or NOW + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
            .sign(self.ca_key, hashes.SHA256())
        )
        return pkcs12.serialize_key_and_certificates(
            friendly_name.encode(),
            key,
            cert,
            [self.ca],
            serialization.BestAvailableEncryption(password.encode()),
        )


def make_pki() -> Pki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Acme Test CA"))
        .issuer_name(_name("Acme Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=3650))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(ca, ca_key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


# Helpers --------------------------------------------------------------------------------


def unstuff(content: bytes) -> bytes:
    """The message in SMTP DATA content: final dot removed, dot-stuffing undone
    (RFC 5321 section 4.5.2)."""
    assert content.endswith(b"\r\n.\r\n")
    lines = content[: -len(b".\r\n")].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def dkim_verifies(message: bytes, record: dict[str, Any]) -> bool:
    def dnsfunc(query: bytes | str, timeout: int = 5) -> bytes:
        asked = query.decode() if isinstance(query, bytes) else query
        return str(record["value"]).encode() if asked.rstrip(".") == record["name"] else b""

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def openssl_verify(message: bytes, pki: Pki, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca_pem())
    message_file = tmp_path / "received.eml"
    message_file.write_bytes(message)
    return subprocess.run(
        [OPENSSL, "smime", "-verify", "-in", str(message_file), "-CAfile", str(ca_file)],
        capture_output=True,
        check=False,
        timeout=30,
    )


async def dkim_key(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"domain": "acme.example", "selector": "s1", **fields}
    r = await tenant.client.post(f"{T}/dkim-keys", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def smime_identity(tenant: Tenant, p12: bytes, password: str, alias: str | None) -> None:
    r = await tenant.client.post(
        f"{T}/keystores",
        json={
            "name": "billing",
            "kind": "pkcs12",
            "content": base64.b64encode(p12).decode(),
            "password": password,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    accounts = (await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"]
    r = await tenant.client.patch(
        f"{T}/email-accounts/{accounts[0]['id']}",
        json={"smime": {"keystore_id": r.json()["id"], "alias": alias}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text


async def queued(tenant: Tenant) -> int:
    r = await tenant.client.get(f"{T}/messages/stats", headers=ADMIN)
    return sum(int(v) for v in r.json().values())


# DKIM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
async def test_dkim_signature_verifies_after_smtp(
    tenant: Tenant, engines: EngineCache, algorithm: str
) -> None:
    key = await dkim_key(tenant, algorithm=algorithm)
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port)
        message_id = await tenant.send_ok(
            stage="production", text="Hello.\n.leading dot\n", html="<p>Hi</p>"
        )
        await drain(tenant.ctx, engines=engines)
    assert (await tenant.message(message_id))["status"] == "sent"
    received = unstuff(sink.contents[0])
    assert received.startswith(b"DKIM-Signature: v=1; a=" + algorithm.encode() + b"-sha256")
    assert b" d=acme.example;" in received and b"s=s1;" in received
    assert dkim_verifies(received, key["dns_record"])
    # A changed body no longer verifies: the signature covers what was sent.
    assert not dkim_verifies(received.replace(b"Hello.", b"Hallo."), key["dns_record"])


async def test_newest_key_of_the_domain_signs(tenant: Tenant) -> None:
    await dkim_key(tenant, selector="old")
    newest = await dkim_key(tenant, selector="new", algorithm="ed25519")
    message_id = await tenant.send_ok()
    raw = (await tenant.client.get(f"{T}/messages/{message_id}/raw", headers=ADMIN)).content
    assert b"s=new" in raw and dkim_verifies(raw, newest["dns_record"])


async def test_retries_send_identical_signed_bytes(
    tenant: Tenant, engines: EngineCache, pki: Pki
) -> None:
    key = await dkim_key(tenant)
    await smime_identity(tenant, pki.pkcs12("pw"), "pw", None)

    async def first_attempt_deferred(conn: RawConnection) -> None:
        replies = {"DOT": [b"451 4.3.0 try again\r\n", b"250 2.0.0 ok\r\n"]}
        await conn.serve(replies if conn.index == 0 else None)

    async with RawSmtpServer(first_attempt_deferred) as sink:
        await tenant.server(sink.port)
        message_id = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
        await make_due(tenant.ctx)
        await drain(tenant.ctx, engines=engines)
    assert (await tenant.message(message_id))["status"] == "sent"
    assert len(sink.contents) == 2 and sink.contents[0] == sink.contents[1]
    assert dkim_verifies(unstuff(sink.contents[1]), key["dns_record"])


async def test_batch_signs_every_message(tenant: Tenant) -> None:
    key = await dkim_key(tenant, algorithm="ed25519")
    batch = [{"to": [f"r{i}@example.com"], "subject": f"#{i}", "text": "x"} for i in range(60)]
    batch.append({"to": ["not an address"], "subject": "bad", "text": "x"})
    r = await tenant.client.post(
        f"{T}/messages/batch", json={"messages": batch}, headers=tenant.sender
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["status"] for i in items] == [202] * 60 + [422]
    for item in items[:60:15]:
        raw = (await tenant.client.get(f"{T}/messages/{item['id']}/raw", headers=ADMIN)).content
        assert dkim_verifies(raw, key["dns_record"])


# S/MIME ---------------------------------------------------------------------------------


@needs_openssl
async def test_smime_and_dkim_verify_after_smtp(
    tenant: Tenant, engines: EngineCache, pki: Pki, tmp_path: Path
) -> None:
    key = await dkim_key(tenant)
    await smime_identity(tenant, pki.pkcs12("p12-pass"), "p12-pass", "billing")
    async with RawSmtpServer.scripted() as sink:
        await tenant.server(sink.port)
        message_id = await tenant.send_ok(
            stage="production",
            text="Signed.\n.dot line\n",
            attachments=[
                {
                    "filename": "a.bin",
                    "content_type": "application/octet-stream",
                    "content": base64.b64encode(bytes(range(256))).decode(),
                }
            ],
        )
        await drain(tenant.ctx, engines=engines)
    assert (await tenant.message(message_id))["status"] == "sent"
    received = unstuff(sink.contents[0])
    parsed = message_from_bytes(received, policy=policy.default)
    assert parsed.get_content_type() == "multipart/signed"
    result = openssl_verify(received, pki, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Signed." in result.stdout
    # DKIM was applied last, over the S/MIME structure.
    assert received.startswith(b"DKIM-Signature:")
    assert dkim_verifies(received, key["dns_record"])


async def test_expired_certificate_is_refused_and_nothing_is_queued(
    tenant: Tenant, pki: Pki
) -> None:
    expired = pki.pkcs12("pw", valid_to=NOW - timedelta(days=1))
    await smime_identity(tenant, expired, "pw", None)
    r = await tenant.send()
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["from"]
    assert "expired" in r.json()["errors"][0]["message"]
    assert await queued(tenant) == 0


async def test_http_engines_refuse_smime_at_acceptance(tenant: Tenant, pki: Pki) -> None:
    await smime_identity(tenant, pki.pkcs12("pw"), "pw", None)
    graph = await tenant.client.post(
        f"{T}/mail-servers",
        json={
            "name": "Graph",
            "engine": "msgraph",
            "sender_upn": "noreply@acme.example",
            "oauth": {"provider": "microsoft", "client_id": "c", "tenant_id": "t"},
            "stages": ["test"],
        },
        headers=ADMIN,
    )
    assert graph.status_code == 201, graph.text
    r = await tenant.send(stage="test")
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["field"] == "from" and "msgraph" in error["message"]
    assert await queued(tenant) == 0
    # The same account still sends, signed, through a capture or SMTP server.
    assert (await tenant.send()).status_code == 202


async def test_unusable_keystore_refuses_instead_of_sending_unsigned(
    tenant: Tenant, pki: Pki
) -> None:
    await smime_identity(tenant, pki.pkcs12("pw"), "pw", None)
    await dkim_key(tenant)
    # The keys that sealed the signing secrets are gone (a lost key file).
    tenant.ctx.box = SecretBox([generate_key()])
    routing_snapshot.clear_caches()
    r = await tenant.send()
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "from"
    assert await queued(tenant) == 0


# Key rotation ---------------------------------------------------------------------------


async def test_rotation_reseals_dkim_keys_and_keystores(
    tenant: Tenant, pki: Pki, settings: Settings
) -> None:
    key = await dkim_key(tenant)
    await smime_identity(tenant, pki.pkcs12("pw"), "pw", None)
    new_key = generate_key()
    done = await reseal_all(
        tenant.ctx.db, SecretBox([new_key, *(k.get_secret_value() for k in settings.secret_keys)])
    )
    assert done >= 2  # the DKIM key and the keystore at least
    tenant.ctx.box = SecretBox([new_key])  # the old key is retired
    routing_snapshot.clear_caches()
    message_id = await tenant.send_ok()
    raw = (await tenant.client.get(f"{T}/messages/{message_id}/raw", headers=ADMIN)).content
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/signed"
    assert dkim_verifies(raw, key["dns_record"])


async def test_an_http_fallback_never_carries_smime_mail(tenant: Tenant, pki: Pki) -> None:
    """The primary is down and its fallback is SendGrid, which rebuilds messages: S/MIME mail
    waits for the primary instead of going out unsigned; unsigned mail does use the fallback."""
    async with HttpServer.answering(HttpResponse(202)) as sendgrid:
        fallback = await tenant.client.post(
            f"{T}/mail-servers",
            json={
                "name": "SendGrid",
                "engine": "sendgrid",
                "api_key": "SG.fallback-key",
                "api_base_url": sendgrid.url(),
            },
            headers=ADMIN,
        )
        assert fallback.status_code == 201, fallback.text
        await tenant.server(free_port(), name="Down", fallback_server_id=fallback.json()["id"])
        await smime_identity(tenant, pki.pkcs12("pw"), "pw", None)
        signed = await tenant.send_ok(stage="production")
        await drain(tenant.ctx)
        message = await tenant.message(signed)
        assert message["status"] == "deferred"
        assert {a["server_id"] for a in message["attempts"]} == {message["server_id"]}
        assert sendgrid.requests == []

        accounts = await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)
        account_id = accounts.json()["items"][0]["id"]
        r = await tenant.client.patch(
            f"{T}/email-accounts/{account_id}", json={"smime": None}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        plain = await tenant.send_ok(stage="production")
        await drain(tenant.ctx)
        assert (await tenant.message(plain))["status"] == "sent"
        assert len(sendgrid.requests) == 1
