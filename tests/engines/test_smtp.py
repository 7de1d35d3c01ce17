"""The SMTP engine against a real aiosmtpd: security modes, AUTH, TLS failures, pooling."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from tests.engines.conftest import ConfigFactory
from tests.support.smtp_servers import HOST, PASSWORD, USER, AiosmtpdServer, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.config import Secret
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.errors import ConfigurationError

MESSAGE = b"From: a@mailgate.test\r\nTo: b@mailgate.test\r\nSubject: hi\r\n\r\nHello.\r\n"
ENVELOPE = Envelope("a@mailgate.test", ("b@mailgate.test",))


def password_auth(**extra: object) -> dict[str, object]:
    return {"auth": AuthKind.PASSWORD, "username": USER, "password": Secret(PASSWORD), **extra}


async def test_plain_delivery_reports_sent_with_transcript(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with AiosmtpdServer() as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT
    assert result.code == 250
    assert result.remote_id == "A1B2C3"
    assert [r.kind for r in result.recipients] == [OutcomeKind.SENT]
    assert result.tls_version is None
    assert dialer.attempts == [(HOST, server.port)]
    (received,) = server.messages
    assert received.rcpt_tos == ("b@mailgate.test",)
    assert received.data == MESSAGE
    lines = result.transcript.splitlines()
    assert "C: EHLO client.mailgate.test" in lines
    assert f"C: MAIL FROM:<a@mailgate.test> SIZE={len(MESSAGE) + 3}" in lines
    assert f"C: [{len(MESSAGE) + 3} bytes]" in lines
    assert all(line.startswith(("C: ", "S: ", "* ")) for line in lines)


@pytest.mark.parametrize(
    ("mode", "security", "options"),
    [
        ("starttls", Security.STARTTLS, {}),
        ("starttls", Security.STARTTLS, {"disable_auth_plain": "true"}),
        ("tls", Security.TLS, {}),
        ("tls", Security.TLS, {"disable_auth_plain": "true"}),
    ],
)
async def test_tls_modes_with_auth(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    good_cert: CertFiles,
    mode: str,
    security: Security,
    options: dict[str, str],
) -> None:
    async with AiosmtpdServer(mode=mode, cert=good_cert, user=USER) as server:
        config = make_config(
            server.port,
            security=security,
            options={"ehlo_name": "client.mailgate.test", **options},
            **password_auth(),
        )
        engine = SmtpEngine(config, dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT, result.transcript
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    mechanism = "LOGIN" if options else "PLAIN"
    assert f"C: AUTH {mechanism} [redacted]" in result.transcript
    assert len(server.messages) == 1


async def test_wrong_password_is_auth_failed(
    make_config: ConfigFactory, dialer: LoopbackDialer, good_cert: CertFiles
) -> None:
    async with AiosmtpdServer(mode="starttls", cert=good_cert, user=USER) as server:
        config = make_config(
            server.port, security=Security.STARTTLS, **password_auth(password=Secret("nope"))
        )
        engine = SmtpEngine(config, dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert result.code == 535
    assert result.recipients[0].kind is OutcomeKind.AUTH_FAILED
    assert server.messages == []


@pytest.mark.parametrize("mode", ["starttls", "tls"])
@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("expired", f"certificate for {HOST} has expired"),
        ("wrong_name", f"certificate is not valid for host {HOST}"),
        ("untrusted", f"certificate for {HOST} is not trusted"),
    ],
)
async def test_certificate_problems_are_deferred_connection_errors(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    test_ca: TestCA,
    tmp_path_factory: pytest.TempPathFactory,
    mode: str,
    problem: str,
    expected: str,
) -> None:
    if problem == "expired":
        cert = test_ca.issue(HOST, expired=True)
    elif problem == "wrong_name":
        cert = test_ca.issue("other.mailgate.test")
    else:
        cert = TestCA(tmp_path_factory.mktemp("other-ca")).issue(HOST)
    security = Security.STARTTLS if mode == "starttls" else Security.TLS
    async with AiosmtpdServer(mode=mode, cert=cert, user=USER) as server:
        config = make_config(server.port, security=security, **password_auth())
        engine = SmtpEngine(config, dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.DEFERRED
    assert result.connection_error is True
    assert expected in result.reply
    assert "AUTH" not in result.transcript
    assert "MAIL FROM" not in result.transcript
    assert server.messages == []


async def test_verification_can_be_turned_off_per_server(
    make_config: ConfigFactory, dialer: LoopbackDialer, test_ca: TestCA
) -> None:
    cert = test_ca.issue("other.mailgate.test", label="unverified")
    async with AiosmtpdServer(mode="tls", cert=cert) as server:
        config = make_config(server.port, security=Security.TLS, verify_certificate=False)
        engine = SmtpEngine(config, dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT


async def test_messages_reuse_one_pooled_connection(
    make_config: ConfigFactory, dialer: LoopbackDialer, good_cert: CertFiles
) -> None:
    async with AiosmtpdServer(mode="starttls", cert=good_cert, user=USER) as server:
        config = make_config(server.port, security=Security.STARTTLS, **password_auth())
        engine = SmtpEngine(config, dialer=dialer)
        results = [await engine.deliver(ENVELOPE, MESSAGE) for _ in range(5)]
        await engine.aclose()
    assert [r.kind for r in results] == [OutcomeKind.SENT] * 5
    assert server.connections == 1
    assert engine.connections_opened == 1
    assert "reusing connection" in results[-1].transcript
    assert results[-1].tls_version in ("TLSv1.2", "TLSv1.3")
    assert len(server.messages) == 5


async def test_concurrent_deliveries_use_separate_connections_up_to_the_limit(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with AiosmtpdServer() as server:
        engine = SmtpEngine(make_config(server.port, max_connections=3), dialer=dialer)
        results = await asyncio.gather(*(engine.deliver(ENVELOPE, MESSAGE) for _ in range(12)))
        await engine.aclose()
    assert all(r.kind is OutcomeKind.SENT for r in results)
    assert 1 <= server.connections <= 3
    assert len(server.messages) == 12


async def test_smtputf8_is_used_when_needed_and_offered(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    envelope = Envelope("sender@mailgate.test", ("jörg@exämple.test",), smtputf8=True)
    async with AiosmtpdServer() as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(envelope, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT, result.transcript
    assert server.messages[0].rcpt_tos == ("jörg@exämple.test",)
    assert "SMTPUTF8" in server.messages[0].mail_options


async def test_smtputf8_needed_but_missing_fails_without_sending(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    envelope = Envelope("sender@mailgate.test", ("jörg@exämple.test",), smtputf8=True)
    async with AiosmtpdServer(smtputf8=False) as server:
        engine = SmtpEngine(make_config(server.port), dialer=dialer)
        result = await engine.deliver(envelope, MESSAGE)
        again = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.FAILED
    assert "SMTPUTF8" in result.reply
    assert "MAIL FROM" not in result.transcript
    assert again.kind is OutcomeKind.SENT
    assert server.connections == 1  # the clean connection was kept


async def test_canary_password_never_in_transcript_or_logs(
    make_config: ConfigFactory,
    dialer: LoopbackDialer,
    good_cert: CertFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-" + PASSWORD
    results = []
    async with AiosmtpdServer(mode="starttls", cert=good_cert, user=USER) as server:
        for secret, options in [
            (PASSWORD, {}),
            (PASSWORD, {"disable_auth_plain": "true"}),
            (wrong, {}),
            (wrong, {"disable_auth_plain": "true"}),
        ]:
            config = make_config(
                server.port,
                security=Security.STARTTLS,
                options={"ehlo_name": "client.mailgate.test", **options},
                **password_auth(password=Secret(secret)),
            )
            engine = SmtpEngine(config, dialer=dialer)
            results.append(await engine.deliver(ENVELOPE, MESSAGE))
            await engine.aclose()
    kinds = [r.kind for r in results]
    assert kinds == [OutcomeKind.SENT] * 2 + [OutcomeKind.AUTH_FAILED] * 2
    forbidden = {PASSWORD, wrong}
    for secret in list(forbidden):
        forbidden.add(base64.b64encode(secret.encode()).decode())
        for blob in (f"\0{USER}\0{secret}",):
            forbidden.add(base64.b64encode(blob.encode()).decode())
    # The test server's own logger ("mail.log") is the remote side; everything of ours,
    # asyncio's included, must be clean.
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    texts = [r.transcript + repr(r) for r in results] + [r.getMessage() for r in ours]
    for text in texts:
        for secret in forbidden:
            assert secret not in text


def test_password_over_plaintext_is_refused_at_construction(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    with pytest.raises(ConfigurationError, match="unencrypted"):
        SmtpEngine(make_config(2525, **password_auth()), dialer=dialer)
    SmtpEngine(make_config(2525, **password_auth(allow_insecure_auth=True)), dialer=dialer)


async def test_insecure_auth_when_explicitly_allowed(
    make_config: ConfigFactory, dialer: LoopbackDialer
) -> None:
    async with AiosmtpdServer(user=USER) as server:
        config = make_config(server.port, **password_auth(allow_insecure_auth=True))
        engine = SmtpEngine(config, dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT, result.transcript


@pytest.mark.parametrize(
    "options",
    [{"ehlo_name": "bad name"}, {"disable_auth_plain": "maybe"}, {"idle_timeout": "-1"}],
)
def test_bad_options_are_configuration_errors(
    make_config: ConfigFactory, dialer: LoopbackDialer, options: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError):
        SmtpEngine(make_config(2525, options=options), dialer=dialer)
