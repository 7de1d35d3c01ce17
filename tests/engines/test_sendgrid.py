"""The SendGrid engine against a loopback HTTPS server: request shape, status table, faults."""

from __future__ import annotations

import base64
import socket
import time
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
from tests.support.http_fakes import DROP, STALL, HttpResponse, HttpServer
from tests.support.smtp_servers import HOST, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.outcomes import (
    MAX_RETRY_AFTER,
    classify_http_failure,
    classify_http_status,
    parse_http_retry_after,
    parse_reset_epoch,
)
from mailgate.domain.servers import Engine
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.http.sendgrid import SendGridEngine, payload
from mailgate.errors import ConfigurationError
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import IPAddress, NetworkPolicy

API_KEY = "SG.canary-api-key-5f1c"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def message(**extra: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Mailgate Tests <sender@example.com>"
    msg["To"] = "Ann <ann@example.com>, bob@example.com"
    msg["Cc"] = "carol@example.com"
    msg["Reply-To"] = "Help Desk <help@example.com>"
    msg["Subject"] = "Quarterly report ✓"
    msg["Message-ID"] = "<m1.abc@mailgate.example>"
    msg["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    msg["X-Mailgate-Tenant"] = "acme"
    for name, value in extra.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello in text\n")
    msg.add_alternative('<p>Hello <img src="cid:logo@mailgate"></p>\n', subtype="html")
    html = msg.get_payload()[1]
    html.add_related(
        PNG, "image", "png", cid="<logo@mailgate>", filename="logo.png", disposition="inline"
    )
    msg.add_attachment(b"a,b\r\n1,2\r\n", "text", "csv", filename="report.csv")
    return msg.as_bytes()


RECIPIENTS = ("ann@example.com", "bob@example.com", "carol@example.com")
ENVELOPE = Envelope("bounce@example.com", RECIPIENTS)


@pytest.fixture
def config(test_ca: TestCA) -> Any:
    def make(server: HttpServer, **overrides: Any) -> ServerConfig:
        values: dict[str, Any] = {
            "key": "sendgrid-1",
            "engine": Engine.SENDGRID,
            "api_key": Secret(API_KEY),
            "api_base_url": server.url(HOST),
            "ca_certificates": test_ca.ca_pem,
            "timeout_seconds": 2.0,
        }
        values.update(overrides)
        return ServerConfig(**values)

    return make


def accepted() -> HttpResponse:
    return HttpResponse(202, headers={"X-Message-Id": "sg-Abc123"})


async def test_request_shape_over_tls(
    config: Any, good_cert: CertFiles, dialer: LoopbackDialer
) -> None:
    data = message(X_Mailgate_Categories="reports, monthly,reports")
    async with HttpServer.answering(accepted(), ssl_context=good_cert.server_context()) as server:
        engine = SendGridEngine(config(server), dialer=dialer)
        result = await engine.deliver(ENVELOPE, data)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT
    assert (result.code, result.remote_id) == (202, "sg-Abc123")
    assert result.tls_version is not None and result.tls_version.startswith("TLSv1.")
    assert dialer.attempts == [(HOST, server.port)]
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["personalizations"] == [
        {
            "to": [{"email": "ann@example.com"}, {"email": "bob@example.com"}],
            "cc": [{"email": "carol@example.com"}],
        }
    ]
    assert body["from"] == {"email": "sender@example.com", "name": "Mailgate Tests"}
    assert body["reply_to"] == {"email": "help@example.com", "name": "Help Desk"}
    assert body["subject"] == "Quarterly report ✓"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == "Hello in text\n"
    inline, attached = body["attachments"]
    assert inline == {
        "content": base64.b64encode(PNG).decode(),
        "filename": "logo.png",
        "type": "image/png",
        "disposition": "inline",
        "content_id": "logo@mailgate",
    }
    assert attached["disposition"] == "attachment"
    assert attached["filename"] == "report.csv"
    assert base64.b64decode(attached["content"]) == b"a,b\r\n1,2\r\n"
    assert body["headers"] == {
        "Message-ID": "<m1.abc@mailgate.example>",
        "X-Mailgate-Tenant": "acme",
    }
    assert body["categories"] == ["reports", "monthly"]


def test_envelope_decides_recipients() -> None:
    """A test list (or Bcc) recipient gets a personalization of its own."""
    envelope = Envelope("b@example.com", ("ann@example.com", "qa@test.example", "QA@test.example"))
    body = payload(envelope, message())
    assert body["personalizations"] == [
        {"to": [{"email": "ann@example.com"}]},
        {"to": [{"email": "qa@test.example"}]},
    ]
    only_list = payload(Envelope("b@example.com", ("qa@test.example",)), message())
    assert only_list["personalizations"] == [{"to": [{"email": "qa@test.example"}]}]
    assert "categories" not in only_list


def sg_errors(*messages: str) -> bytes:
    import json

    return json.dumps({"errors": [{"message": m, "field": None} for m in messages]}).encode()


@pytest.mark.parametrize(
    ("response", "kind", "reply_part", "retry"),
    [
        (accepted(), OutcomeKind.SENT, "accepted", None),
        (
            HttpResponse(400, sg_errors("Invalid from email")),
            OutcomeKind.FAILED,
            "Invalid from email",
            None,
        ),
        (HttpResponse(413, sg_errors("too large")), OutcomeKind.FAILED, "too large", None),
        (HttpResponse(401, sg_errors("bad key")), OutcomeKind.AUTH_FAILED, "bad key", None),
        (HttpResponse(403, sg_errors("no scope")), OutcomeKind.AUTH_FAILED, "no scope", None),
        (HttpResponse(429, headers={"Retry-After": "42"}), OutcomeKind.DEFERRED, "429", 42.0),
        (HttpResponse(500), OutcomeKind.DEFERRED, "500", None),
        (HttpResponse(503, headers={"Retry-After": "7"}), OutcomeKind.DEFERRED, "503", 7.0),
    ],
    ids=["202", "400", "413", "401", "403", "429-retry-after", "500", "503"],
)
async def test_status_table(
    config: Any,
    good_cert: CertFiles,
    dialer: LoopbackDialer,
    response: HttpResponse,
    kind: OutcomeKind,
    reply_part: str,
    retry: float | None,
) -> None:
    async with HttpServer.answering(response, ssl_context=good_cert.server_context()) as server:
        engine = SendGridEngine(config(server), dialer=dialer)
        result = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert result.kind is kind
    assert result.code == response.status
    assert reply_part in result.reply
    assert result.retry_after == retry
    assert result.connection_error is (response.status >= 500)
    assert [r.kind for r in result.recipients] == [kind] * 3
    assert (result.remote_id is not None) is (kind is OutcomeKind.SENT)


async def test_429_uses_ratelimit_reset(config: Any, dialer: LoopbackDialer) -> None:
    reset = str(int(time.time()) + 90)
    response = HttpResponse(429, headers={"X-RateLimit-Reset": reset, "Retry-After": "5"})
    async with HttpServer.answering(response) as server:
        engine = SendGridEngine(config(server, api_base_url=server.url()), dialer=dialer)
        result = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert result.kind is OutcomeKind.DEFERRED
    assert result.retry_after is not None and 85 <= result.retry_after <= 90


async def test_connection_refused_is_deferred(config: Any, dialer: LoopbackDialer) -> None:
    server = HttpServer.answering(accepted())
    async with server:
        pass  # the port is closed again
    engine = SendGridEngine(config(server, api_base_url=server.url()), dialer=dialer)
    result = await engine.deliver(ENVELOPE, message())
    await engine.aclose()
    assert result.kind is OutcomeKind.DEFERRED
    assert result.connection_error
    assert "could not connect" in result.reply


@pytest.mark.parametrize("answer", [STALL, DROP])
async def test_no_answer_after_sending_is_unknown(
    config: Any, dialer: LoopbackDialer, answer: str
) -> None:
    async with HttpServer.answering(answer) as server:
        engine = SendGridEngine(
            config(server, api_base_url=server.url(), timeout_seconds=0.3), dialer=dialer
        )
        result = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert len(server.requests) == 1  # the provider had the whole request
    assert result.kind is OutcomeKind.UNKNOWN
    assert result.connection_error


async def test_untrusted_certificate_is_deferred(
    config: Any, good_cert: CertFiles, dialer: LoopbackDialer
) -> None:
    async with HttpServer.answering(accepted(), ssl_context=good_cert.server_context()) as server:
        engine = SendGridEngine(config(server, ca_certificates=None), dialer=dialer)
        result = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert result.kind is OutcomeKind.DEFERRED
    assert "not trusted" in result.reply
    assert server.requests == []


class RecordingConnector:
    def __init__(self) -> None:
        self.attempts: list[tuple[IPAddress, int]] = []

    async def connect(self, address: IPAddress, port: int) -> socket.socket:
        self.attempts.append((address, port))
        raise AssertionError("no connection may be attempted")


async def test_metadata_address_is_refused_without_connecting(config: Any) -> None:
    connector = RecordingConnector()
    dialer = GuardedDialer(NetworkPolicy(), connector=connector)
    server = HttpServer.answering(accepted())
    engine = SendGridEngine(config(server, api_base_url="https://169.254.169.254"), dialer=dialer)
    result = await engine.deliver(ENVELOPE, message())
    await engine.aclose()
    assert connector.attempts == []
    assert result.kind is OutcomeKind.DEFERRED
    assert result.connection_error
    assert "network policy" in result.reply


async def test_connections_are_reused_and_key_never_shown(
    config: Any, dialer: LoopbackDialer
) -> None:
    async with HttpServer.answering(accepted(), HttpResponse(401, sg_errors("nope"))) as server:
        engine = SendGridEngine(config(server, api_base_url=server.url()), dialer=dialer)
        first = await engine.deliver(ENVELOPE, message())
        second = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert (first.kind, second.kind) == (OutcomeKind.SENT, OutcomeKind.AUTH_FAILED)
    assert server.connections == 1
    for result in (first, second):
        assert API_KEY not in f"{result!r}{result.transcript}{result.reply}"
    assert API_KEY not in repr(engine)
    assert "POST http://127.0.0.1" in first.transcript


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"api_key": None}, "api_key"),
        ({"api_base_url": "http://sendgrid.example"}, "https"),
        ({"api_base_url": "https://user:pw@sendgrid.example"}, "credentials"),
        ({"api_base_url": "ftp://sendgrid.example"}, "https"),
    ],
)
def test_configuration_errors(config: Any, overrides: dict[str, Any], words: str) -> None:
    server = HttpServer.answering(accepted())
    with pytest.raises(ConfigurationError, match=words):
        SendGridEngine(config(server, **overrides), dialer=LoopbackDialer())


async def test_message_without_from_fails(config: Any, dialer: LoopbackDialer) -> None:
    server = HttpServer.answering(accepted())
    engine = SendGridEngine(config(server, api_base_url="https://sg.test"), dialer=dialer)
    result = await engine.deliver(ENVELOPE, b"Subject: x\r\n\r\nbody\r\n")
    await engine.aclose()
    assert result.kind is OutcomeKind.FAILED
    assert dialer.attempts == []


@pytest.mark.parametrize(
    ("status", "kind", "connection_error"),
    [
        (200, OutcomeKind.SENT, False),
        (202, OutcomeKind.SENT, False),
        (302, OutcomeKind.DEFERRED, True),
        (400, OutcomeKind.FAILED, False),
        (401, OutcomeKind.AUTH_FAILED, False),
        (403, OutcomeKind.AUTH_FAILED, False),
        (404, OutcomeKind.FAILED, False),
        (408, OutcomeKind.DEFERRED, False),
        (413, OutcomeKind.FAILED, False),
        (429, OutcomeKind.DEFERRED, False),
        (500, OutcomeKind.DEFERRED, True),
        (503, OutcomeKind.DEFERRED, True),
    ],
)
def test_http_status_table(status: int, kind: OutcomeKind, connection_error: bool) -> None:
    outcome = classify_http_status(status, retry_after=5.0)
    assert (outcome.kind, outcome.connection_error) == (kind, connection_error)
    assert (outcome.retry_after == 5.0) is (kind is OutcomeKind.DEFERRED)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("Thu, 01 Jan 1970 00:02:30 GMT", 50.0),  # an HTTP-date, 50 s after "now"
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("99999999", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_header(value: str | None, seconds: float | None) -> None:
    assert parse_http_retry_after(value, now=100.0) == seconds


def test_failures_without_response() -> None:
    assert classify_http_failure(request_sent=True).kind is OutcomeKind.UNKNOWN
    assert classify_http_failure(request_sent=False).kind is OutcomeKind.DEFERRED
    assert parse_reset_epoch("160", now=100.0) == 60.0


async def test_an_echoed_api_key_is_redacted_from_the_reply(
    config: Any, dialer: LoopbackDialer
) -> None:
    key_b64 = base64.b64encode(API_KEY.encode()).decode()
    echo = HttpResponse(401, sg_errors(f"bad key {API_KEY} ({key_b64})"))
    async with HttpServer.answering(echo) as server:
        engine = SendGridEngine(config(server, api_base_url=server.url()), dialer=dialer)
        result = await engine.deliver(ENVELOPE, message())
        await engine.aclose()
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert "bad key" in result.reply
    for text in [result.reply, result.transcript, *(r.reply for r in result.recipients)]:
        assert API_KEY not in text
        assert key_b64 not in text
