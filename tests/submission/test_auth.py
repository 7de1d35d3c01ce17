"""AUTH on the submission listener: tokens as passwords, tenants as usernames, TLS first."""

from __future__ import annotations

import base64
import logging
import ssl

import aiosmtplib
import pytest

from mailgate.submission import SubmissionServer
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant
from tests.support.tls import CertFiles, TestCA

from .conftest import (
    SENDER,
    SLUG,
    Serve,
    client,
    message,
    new_token,
    queued_id,
    raw_of,
    token_of,
    unfolded_head,
)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_with_a_token_then_send(
    tenant: Tenant, plain: SubmissionServer, mechanism: str
) -> None:
    async with client(plain.port) as smtp:
        await smtp.ehlo()
        assert smtp.supports_extension("auth")
        assert set(smtp.server_auth_methods) == {"plain", "login"}
        login = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        response = await login(SLUG, token_of(tenant))
        assert response.code == 235
        _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
    stored = await tenant.message(queued_id(reply))
    assert stored["status"] == "queued"


async def test_plain_with_an_initial_response_and_an_authzid(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    token = token_of(tenant)
    async with client(plain.port) as smtp:
        await smtp.ehlo()
        other = base64.b64encode(f"globex\0{SLUG}\0{token}".encode()).decode()
        refused = await smtp.execute_command(b"AUTH", b"PLAIN", other.encode())
        assert refused.code == 535  # acting as another identity is not supported
        same = base64.b64encode(f"{SLUG}\0{SLUG}\0{token}".encode()).decode()
        accepted = await smtp.execute_command(b"AUTH", b"PLAIN", same.encode())
        assert accepted.code == 235


async def _auth_reply(port: int, username: str, password: str) -> aiosmtplib.SMTPResponse:
    async with client(port) as smtp:
        await smtp.ehlo()
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.auth_plain(username, password)
        # Nothing can be sent after a refused AUTH.
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as mail:
            await smtp.mail(SENDER)
        assert mail.value.code == 530
    return aiosmtplib.SMTPResponse(refused.value.code, refused.value.message)


async def test_wrong_token_unknown_tenant_and_other_tenants_token_look_alike(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    r = await tenant.client.post(
        "/api/v1/tenants", json={"slug": "globex", "name": "Globex"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    globex = await new_token(tenant.client, "owner", slug="globex")
    wrong = await _auth_reply(plain.port, SLUG, "mg_not_a_token")
    unknown = await _auth_reply(plain.port, "nobody", token_of(tenant))
    other = await _auth_reply(plain.port, SLUG, globex)
    assert wrong.code == unknown.code == other.code == 535
    # 404-never-403 across tenants: the replies say nothing about what exists.
    assert wrong.message == unknown.message == other.message
    assert "5.7.8" in other.message


async def test_token_without_send_permission_is_refused(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    viewer = await new_token(tenant.client, "viewer")
    refused = await _auth_reply(plain.port, SLUG, viewer)
    assert refused.code == 535
    assert "email:send" in refused.message


async def test_mail_before_auth_needs_authentication(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    async with client(plain.port) as smtp:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.sendmail(SENDER, ["a@example.com"], message())
    assert refused.value.code == 530


async def test_a_revoked_token_stops_working_on_an_open_connection(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    token = await new_token(tenant.client, "sender")
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token)
        _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
        queued_id(reply)
        listed = await tenant.client.get(f"{T}/tokens", headers=ADMIN)
        [row] = [t for t in listed.json()["items"] if t["name"] == "smtp-sender"]
        r = await tenant.client.delete(f"{T}/tokens/{row['id']}", headers=ADMIN)
        assert r.status_code == 204, r.text
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.sendmail(SENDER, ["a@example.com"], message())
    assert refused.value.code == 530


async def test_no_token_in_logs_or_replies(
    tenant: Tenant, plain: SubmissionServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mail.log")  # aiosmtpd's own command log too
    token = token_of(tenant)
    replies: list[str] = []
    for mechanism in ("PLAIN", "LOGIN"):
        async with client(plain.port) as smtp:
            await smtp.ehlo()
            login = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
            replies.append((await login(SLUG, token)).message)
            _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
            replies.append(reply)
    await _auth_reply(plain.port, SLUG, token + "x")
    encoded = base64.b64encode(f"\0{SLUG}\0{token}".encode()).decode()
    text = caplog.text + "\n".join(replies)
    assert "SMTP AUTH from" in caplog.text  # the log does speak of the logins
    assert "AUTH PLAIN" in caplog.text  # and aiosmtpd logged the (redacted) command
    assert token not in text
    assert encoded not in text
    assert base64.b64encode(token.encode()).decode() not in text


# -- STARTTLS ---------------------------------------------------------------------------


def _trusting(ca: TestCA) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.ca_file))


async def test_auth_waits_for_starttls_when_tls_is_configured(
    tenant: Tenant, serve: Serve, ca: TestCA, cert: CertFiles
) -> None:
    async with (
        serve(tls_cert=cert.cert_file, tls_key=cert.key_file) as server,
        client(server.port) as smtp,
    ):
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        assert not smtp.supports_extension("auth")
        refused = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGFjbWUAeA==")
        assert refused.code == 538
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as mail:
            await smtp.mail(SENDER)
        assert mail.value.code == 530
        await smtp.starttls(tls_context=_trusting(ca))
        await smtp.ehlo()
        assert smtp.supports_extension("auth")
        await smtp.login(SLUG, token_of(tenant))
        _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
    head = unfolded_head(await raw_of(tenant, queued_id(reply)))
    assert head[0].startswith("Received: from app.acme.test ([127.0.0.1]) by submit.mailgate.test")
    assert " with ESMTPSA id " in head[0]


async def test_starttls_verifies_against_the_test_ca_only(
    tenant: Tenant, serve: Serve, cert: CertFiles
) -> None:
    async with (
        serve(tls_cert=cert.cert_file, tls_key=cert.key_file) as server,
        client(server.port) as smtp,
    ):
        with pytest.raises(ssl.SSLCertVerificationError):
            # The system trust store does not know the test CA.
            await smtp.starttls(tls_context=ssl.create_default_context())


async def test_insecure_auth_setting_allows_auth_before_tls(
    tenant: Tenant, serve: Serve, cert: CertFiles
) -> None:
    async with (
        serve(tls_cert=cert.cert_file, tls_key=cert.key_file, allow_insecure_auth=True) as server,
        client(server.port) as smtp,
    ):
        await smtp.ehlo()
        assert smtp.supports_extension("starttls") and smtp.supports_extension("auth")
        response = await smtp.auth_plain(SLUG, token_of(tenant))
        assert response.code == 235
        _errors, reply = await smtp.sendmail(SENDER, ["a@example.com"], message())
    head = unfolded_head(await raw_of(tenant, queued_id(reply)))
    assert " with ESMTPA id " in head[0]


async def test_three_auth_attempts_per_connection(tenant: Tenant, plain: SubmissionServer) -> None:
    async with client(plain.port) as smtp:
        await smtp.ehlo()
        for _ in range(3):
            with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                await smtp.auth_plain(SLUG, "mg_guess")
        fourth = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGFjbWUAeA==")
        assert fourth.code == 421
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()


async def test_the_null_reverse_path_is_refused(tenant: Tenant, plain: SubmissionServer) -> None:
    async with client(plain.port) as smtp:
        await smtp.login(SLUG, token_of(tenant))
        refused = await smtp.execute_command(b"MAIL", b"FROM:<>")
    assert refused.code == 553
    assert "5.1.7 MAIL FROM:<> is for bounces" in refused.message
