"""Test connection and delivery agree: one SMTP client, two callers.

Every scripted raw server of the engine tests is run through :func:`probe` and through
:meth:`SmtpEngine.deliver`: the probe is OK exactly when delivery gets as far as MAIL FROM
(authenticated, when the server is configured with auth). Secrets a hostile server echoes
back appear in neither.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.engines.probe_support import HOST, PASSWORD, USER, RawServer

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.capture import CaptureEngine
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.probe import probe
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.engines.smtp.xoauth2 import XOAuth2Engine
from mailgate.errors import ConfigurationError
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy

MESSAGE = b"Subject: agreement\r\n\r\nbody\r\n"
ENVELOPE = Envelope("a@mailgate.test", ("b@mailgate.test",))
QUIT = b"221 2.0.0 bye\r\n"
TOKEN = "ya29.agreement-token"
PLAIN_BLOB = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
PASSWORD_B64 = base64.b64encode(PASSWORD.encode()).decode()
#: What a hostile server that repeats the AUTH payload says.
ECHO = f"535 5.7.8 bad credentials {PLAIN_BLOB} {PASSWORD} {PASSWORD_B64}\r\n".encode()

EHLO_PLAIN = b"250-raw.mailgate.test\r\n250-8BITMIME\r\n250 SIZE 1000\r\n"
EHLO_AUTH = b"250-raw.mailgate.test\r\n250-AUTH=LOGIN\r\n250 AUTH PLAIN XOAUTH2\r\n"
EHLO_AUTH_EQUALS = b"250-raw.mailgate.test\r\n250-8BITMIME\r\n250 AUTH=PLAIN LOGIN\r\n"
ACCEPT = {"MAIL": b"250 ok\r\n", "RCPT": b"250 ok\r\n", "DATA": b"354 go\r\n", "QUIT": QUIT}
PASSWORD_AUTH = {
    "auth": AuthKind.PASSWORD,
    "username": USER,
    "password": Secret(PASSWORD),
    "allow_insecure_auth": True,
}


class LoopbackResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return ["127.0.0.1"]


class StaticTokens:
    async def access_token(self) -> Secret:
        return Secret(TOKEN)

    def invalidate(self, token: Secret | None = None) -> None:
        pass


@dataclass(frozen=True)
class Case:
    """A scripted server (``RawServer`` fields) and the settings it is tried with."""

    server: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "silent": Case({"greeting": None}, {"security": Security.STARTTLS}),
    "tls_alert_greeting": Case({"greeting": b"\x15\x03\x03\x00\x02\x02\x32"}),
    "http_greeting": Case(
        {"greeting": b"HTTP/1.1 400 Bad Request\r\n\r\n", "close_after_greeting": True}
    ),
    "greeting_554": Case({"greeting": b"554 5.7.1 no service\r\n", "close_after_greeting": True}),
    "greeting_421": Case({"greeting": b"421 4.3.2 too busy\r\n", "close_after_greeting": True}),
    "greeting_mixed_codes": Case(
        {"greeting": b"220-first\r\n250 second\r\n", "close_after_greeting": True}
    ),
    "greeting_cut": Case({"greeting": b"220 partial", "close_after_greeting": True}),
    "starttls_injection": Case(
        {
            "replies": {
                "EHLO": b"250-raw\r\n250 STARTTLS\r\n",
                "STARTTLS": b"220 go ahead\r\n250 injected\r\n",
            }
        },
        {"security": Security.STARTTLS},
    ),
    "starttls_not_offered": Case(
        {"replies": {"EHLO": EHLO_PLAIN, **ACCEPT}}, {"security": Security.STARTTLS}
    ),
    "plain": Case({"replies": {"EHLO": EHLO_PLAIN, **ACCEPT}}),
    "helo_only": Case(
        {"replies": {"EHLO": b"502 5.5.2 what\r\n", "HELO": b"250 hi\r\n", **ACCEPT}}
    ),
    "ehlo_refused": Case({"replies": {"EHLO": b"554 5.7.1 go away\r\n", "QUIT": QUIT}}),
    "no_quit_reply": Case({"replies": {"EHLO": EHLO_PLAIN, **ACCEPT, "QUIT": b""}}),
    "auth_not_offered": Case({"replies": {"EHLO": EHLO_PLAIN, **ACCEPT}}, PASSWORD_AUTH),
    "auth_535": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": b"535 5.7.8 invalid\r\n", **ACCEPT}},
        PASSWORD_AUTH,
    ),
    "auth_454": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": b"454 4.7.0 try later\r\n", **ACCEPT}},
        PASSWORD_AUTH,
    ),
    "auth_235": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": b"235 2.7.0 ok\r\n", **ACCEPT}}, PASSWORD_AUTH
    ),
    "auth_equals_only": Case(
        {"replies": {"EHLO": EHLO_AUTH_EQUALS, "AUTH": b"235 2.7.0 ok\r\n", **ACCEPT}},
        PASSWORD_AUTH,
    ),
    "auth_login_only_disabled_plain": Case(
        {"replies": {"EHLO": EHLO_AUTH_EQUALS, "AUTH": b"334 VXNlcm5hbWU6\r\n", **ACCEPT}},
        {**PASSWORD_AUTH, "options": {"disable_auth_plain": "true"}},
    ),
    "auth_echoes_the_secret": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": ECHO, **ACCEPT}}, PASSWORD_AUTH
    ),
    "insecure_auth_not_allowed": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": b"235 2.7.0 ok\r\n", **ACCEPT}},
        {**PASSWORD_AUTH, "allow_insecure_auth": False},
    ),
    "xoauth2_235": Case(
        {"replies": {"EHLO": EHLO_AUTH, "AUTH": b"235 2.7.0 ok\r\n", **ACCEPT}},
        {"auth": AuthKind.XOAUTH2, "username": USER, "allow_insecure_auth": True},
    ),
    "xoauth2_not_offered": Case(
        {"replies": {"EHLO": EHLO_AUTH_EQUALS, **ACCEPT}},
        {"auth": AuthKind.XOAUTH2, "username": USER, "allow_insecure_auth": True},
    ),
}


@pytest.fixture
def dialer() -> GuardedDialer:
    return GuardedDialer(NetworkPolicy(["127.0.0.0/8"]), resolver=LoopbackResolver())


def config_for(port: int, case: Case) -> ServerConfig:
    values: dict[str, Any] = {
        "key": "agreement",
        "host": HOST,
        "port": port,
        "security": Security.NONE,
        "timeout_seconds": 0.5,
    }
    values.update(case.settings)
    return ServerConfig(**values)


async def token(_: ServerConfig) -> str:
    return TOKEN


async def delivery_reaches_mail(config: ServerConfig, dialer: GuardedDialer) -> bool:
    """Whether delivery got as far as MAIL FROM; the server script is running."""
    try:
        engine = SmtpEngine(config, dialer=dialer, tokens=StaticTokens())
    except ConfigurationError:
        return False  # delivery refuses these settings before connecting
    try:
        await engine.deliver(ENVELOPE, MESSAGE)
    finally:
        await engine.aclose()
    return True


@pytest.mark.parametrize("name", list(CASES))
async def test_probe_ok_iff_delivery_reaches_mail(name: str, dialer: GuardedDialer) -> None:
    case = CASES[name]
    async with RawServer(**case.server) as probed:
        report = await probe(config_for(probed.port, case), dialer=dialer, oauth_token=token)
    async with RawServer(**case.server) as delivered:
        built = await delivery_reaches_mail(config_for(delivered.port, case), dialer)
    reached_mail = built and any(line.startswith(b"MAIL FROM:") for line in delivered.received)
    assert report.ok is reached_mail, (report.error, delivered.received)
    if case.settings.get("auth", AuthKind.NONE) is not AuthKind.NONE:
        assert report.authenticated is reached_mail
    assert not any(line.startswith(b"MAIL") for line in probed.received)


async def test_auth_equals_only_server_delivers(dialer: GuardedDialer) -> None:
    """A server announcing only ``AUTH=PLAIN LOGIN`` (pre-RFC 4954 form) gets AUTH PLAIN."""
    case = CASES["auth_equals_only"]
    replies = {**case.server["replies"], "DATA": b"354 go\r\n"}
    async with RawServer(replies=replies, default=b"250 ok\r\n") as server:
        engine = SmtpEngine(config_for(server.port, case), dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT, result.transcript
    assert f"AUTH PLAIN {PLAIN_BLOB}\r\n".encode() in server.received


async def test_auth_equals_only_server_is_reported(dialer: GuardedDialer) -> None:
    case = CASES["auth_equals_only"]
    async with RawServer(**case.server) as server:
        report = await probe(config_for(server.port, case), dialer=dialer)
    assert report.ok, report.error
    assert report.server is not None
    assert report.server.auth_mechanisms == ("PLAIN", "LOGIN")
    assert "AUTH" in report.server.extensions


def _leaks(text: str) -> list[str]:
    return [form for form in (PASSWORD, PASSWORD_B64, PLAIN_BLOB) if form in text]


async def test_echoed_secret_is_redacted_from_delivery(dialer: GuardedDialer) -> None:
    case = CASES["auth_echoes_the_secret"]
    async with RawServer(**case.server) as server:
        engine = SmtpEngine(config_for(server.port, case), dialer=dialer)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert result.code == 535
    assert "bad credentials" in result.reply
    shown = [result.reply, result.transcript, *(r.reply for r in result.recipients)]
    assert [_leaks(text) for text in shown] == [[]] * len(shown)


async def test_echoed_token_is_redacted_from_xoauth2_delivery(dialer: GuardedDialer) -> None:
    blob = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode()
    echo = f"535 5.7.8 invalid token {TOKEN} {blob}\r\n".encode()
    settings = {"auth": AuthKind.XOAUTH2, "username": USER, "allow_insecure_auth": True}
    case = Case({"replies": {"EHLO": EHLO_AUTH, "AUTH": echo, **ACCEPT}}, settings)
    async with RawServer(**case.server) as server:
        tokens = StaticTokens()
        inner = SmtpEngine(config_for(server.port, case), dialer=dialer, tokens=tokens)
        engine = XOAuth2Engine(inner, tokens)
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.AUTH_FAILED
    for text in [result.reply, result.transcript, *(r.reply for r in result.recipients)]:
        assert TOKEN not in text
        assert blob not in text


async def test_echoed_secret_is_redacted_from_the_probe(dialer: GuardedDialer) -> None:
    case = CASES["auth_echoes_the_secret"]
    async with RawServer(**case.server) as server:
        report = await probe(config_for(server.port, case), dialer=dialer)
    assert report.error is not None
    assert report.error.code.value == "auth_failed"
    assert "bad credentials" in report.error.message
    assert _leaks(repr(report.to_dict())) == []


async def test_every_engine_probes_on_the_delivery_seam(dialer: GuardedDialer) -> None:
    """``Engine.probe()`` next to ``deliver()``: the SMTP engine (plain and XOAUTH2) and capture."""
    plain = CASES["auth_235"]
    async with RawServer(**plain.server) as server:
        engine = SmtpEngine(config_for(server.port, plain), dialer=dialer)
        report = await engine.probe()
        await engine.aclose()
    assert report.ok and report.authenticated, report.error
    assert [s.name.value for s in report.steps] == ["connect", "greeting", "ehlo", "auth", "quit"]

    xoauth2 = CASES["xoauth2_235"]
    async with RawServer(**xoauth2.server) as server:
        tokens = StaticTokens()
        inner = SmtpEngine(config_for(server.port, xoauth2), dialer=dialer, tokens=tokens)
        wrapped = XOAuth2Engine(inner, tokens)
        report = await wrapped.probe()
        await wrapped.aclose()
    assert report.ok and report.authenticated, report.error
    blob = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())
    assert b"AUTH XOAUTH2 " + blob + b"\r\n" in server.received

    capture = await CaptureEngine().probe()
    assert capture.error is not None
    assert capture.error.code.value == "engine_not_supported"
