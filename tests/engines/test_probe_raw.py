"""The connection probe against scripted servers: byte-level faults aiosmtpd cannot produce."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.engines.probe_support import HOST, PASSWORD, USER, RawServer, TestPKI

from mailgate.domain.servers import AuthKind, Security, TlsVersion
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.probe import probe
from mailgate.engines.probe_report import ProbeReport
from mailgate.engines.smtp.settings import default_ehlo_name
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy

EHLO_PLAIN = b"250-raw.mailgate.test\r\n250-8BITMIME\r\n250 SIZE 1000\r\n"
EHLO_AUTH = b"250-raw.mailgate.test\r\n250-AUTH=LOGIN\r\n250 AUTH PLAIN XOAUTH2\r\n"
QUIT = b"221 2.0.0 bye\r\n"


class LoopbackResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return ["127.0.0.1"]


@pytest.fixture
def dialer() -> GuardedDialer:
    return GuardedDialer(NetworkPolicy(["127.0.0.0/8"]), resolver=LoopbackResolver())


def config(port: int, **changes: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "key": "raw",
        "host": HOST,
        "port": port,
        "security": Security.NONE,
        "timeout_seconds": 0.5,
    }
    values.update(changes)
    return ServerConfig(**values)


def code_of(report: ProbeReport) -> str:
    assert report.error is not None
    return report.error.code.value


async def test_silent_server_times_out(dialer: GuardedDialer) -> None:
    async with RawServer(greeting=None) as server:
        report = await probe(config(server.port, security=Security.STARTTLS), dialer=dialer)
    assert code_of(report) == "timeout"
    assert [s.name.value for s in report.steps] == ["connect", "greeting"]
    assert not server.saw_transaction()


async def test_tls_garbage_instead_of_greeting(dialer: GuardedDialer) -> None:
    # A TLS alert record (RFC 8446 section 6): what some SMTPS servers send to a plain client.
    async with RawServer(greeting=b"\x15\x03\x03\x00\x02\x02\x32") as server:
        report = await probe(config(server.port, security=Security.STARTTLS), dialer=dialer)
    assert code_of(report) == "starttls_on_tls_port"
    assert not server.saw_transaction()


@pytest.mark.parametrize(
    ("greeting", "code"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "protocol_error"),
        (b"554 5.7.1 no service for you\r\n", "server_rejected"),
        (b"220-first\r\n250 second\r\n", "protocol_error"),
        (b"220 partial", "connection_lost"),
    ],
)
async def test_bad_greetings(greeting: bytes, code: str, dialer: GuardedDialer) -> None:
    async with RawServer(greeting=greeting, close_after_greeting=True) as server:
        report = await probe(config(server.port), dialer=dialer)
    assert code_of(report) == code
    assert not server.saw_transaction()


async def test_starttls_injection_is_refused(dialer: GuardedDialer) -> None:
    replies = {
        "EHLO": b"250-raw\r\n250 STARTTLS\r\n",
        "STARTTLS": b"220 go ahead\r\n250 injected\r\n",
    }
    async with RawServer(replies=replies) as server:
        report = await probe(config(server.port, security=Security.STARTTLS), dialer=dialer)
    assert code_of(report) == "protocol_error"
    assert "RFC 3207" in (report.error.message if report.error else "")
    assert not server.saw_transaction()


async def test_auth_not_offered(dialer: GuardedDialer) -> None:
    async with RawServer(replies={"EHLO": EHLO_PLAIN, "QUIT": QUIT}) as server:
        changes = {"auth": AuthKind.PASSWORD, "username": USER, "password": Secret(PASSWORD)}
        report = await probe(
            config(server.port, allow_insecure_auth=True, **changes), dialer=dialer
        )
    assert code_of(report) == "auth_not_offered"
    assert b"AUTH" not in server.all_bytes()
    assert server.all_bytes().endswith(b"QUIT\r\n")  # a polite goodbye after a clean refusal
    assert not server.saw_transaction()


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"535 5.7.8 Authentication credentials invalid\r\n", "auth_failed"),
        (b"454 4.7.0 Temporary authentication failure\r\n", "auth_temporary_failure"),
    ],
)
async def test_auth_replies(reply: bytes, code: str, dialer: GuardedDialer) -> None:
    async with RawServer(replies={"EHLO": EHLO_AUTH, "AUTH": reply, "QUIT": QUIT}) as server:
        changes = {"auth": AuthKind.PASSWORD, "username": USER, "password": Secret(PASSWORD)}
        report = await probe(
            config(server.port, allow_insecure_auth=True, **changes), dialer=dialer
        )
    assert code_of(report) == code
    assert report.error is not None
    assert PASSWORD not in report.error.message
    sent = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    assert server.all_bytes().count(b"AUTH PLAIN " + sent) == 1
    assert not server.saw_transaction()


async def test_xoauth2(dialer: GuardedDialer) -> None:
    async def token(_: ServerConfig) -> str:
        return "ya29.token"

    replies = {"EHLO": EHLO_AUTH, "AUTH": b"235 2.7.0 Accepted\r\n", "QUIT": QUIT}
    async with RawServer(replies=replies) as server:
        changes = {"auth": AuthKind.XOAUTH2, "username": USER, "allow_insecure_auth": True}
        report = await probe(config(server.port, **changes), dialer=dialer, oauth_token=token)
    assert report.ok, report.error
    assert report.authenticated is True
    assert report.server is not None
    assert report.server.auth_mechanisms == ("LOGIN", "PLAIN", "XOAUTH2")
    payload = base64.b64encode(f"user={USER}\x01auth=Bearer ya29.token\x01\x01".encode())
    assert b"AUTH XOAUTH2 " + payload + b"\r\n" in server.received


async def test_ehlo_fallback_to_helo(dialer: GuardedDialer) -> None:
    replies = {"EHLO": b"502 5.5.2 what\r\n", "HELO": b"250 hi\r\n", "QUIT": QUIT}
    async with RawServer(replies=replies) as server:
        report = await probe(
            config(server.port, options={"ehlo_name": "probe.test"}), dialer=dialer
        )
    assert report.ok, report.error
    assert server.received[:2] == [b"EHLO probe.test\r\n", b"HELO probe.test\r\n"]


async def test_default_ehlo_name_is_the_one_delivery_sends(dialer: GuardedDialer) -> None:
    async with RawServer(replies={"EHLO": EHLO_PLAIN, "QUIT": QUIT}) as server:
        report = await probe(config(server.port), dialer=dialer)
    assert report.ok, report.error
    assert server.received == [f"EHLO {default_ehlo_name()}\r\n".encode(), b"QUIT\r\n"]


async def test_missing_quit_reply_is_only_a_warning(dialer: GuardedDialer) -> None:
    async with RawServer(replies={"EHLO": EHLO_PLAIN, "QUIT": b""}) as server:
        report = await probe(config(server.port), dialer=dialer)
    assert report.ok
    assert report.steps[-1].name.value == "quit"
    assert report.steps[-1].ok is False


async def test_invalid_ehlo_name_is_a_configuration_error(dialer: GuardedDialer) -> None:
    report = await probe(config(2525, options={"ehlo_name": "bad name\r\nMAIL"}), dialer=dialer)
    assert code_of(report) == "invalid_configuration"
    assert report.steps == ()


@pytest.fixture
def tls12_alert_server(tmp_path: Path) -> Iterator[int]:
    """A blocking TLS server capped at TLS 1.2 that answers handshakes with a proper alert."""
    pki = TestPKI(tmp_path)
    context = pki.valid.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = int(listener.getsockname()[1])

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with (
            conn,
            context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False) as tls,
            contextlib.suppress(ssl.SSLError, OSError),
        ):
            tls.do_handshake()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()
    thread.join(5)


async def test_tls_version_alert(tls12_alert_server: int, dialer: GuardedDialer) -> None:
    changes = {"security": Security.TLS, "min_tls_version": TlsVersion.V1_3}
    report = await probe(config(tls12_alert_server, timeout_seconds=3, **changes), dialer=dialer)
    assert code_of(report) == "tls_version_too_low"
    assert report.error is not None
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in report.error.message
