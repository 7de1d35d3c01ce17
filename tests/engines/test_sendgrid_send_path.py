"""SendGrid's ``send_path`` option: delivery and Test Connection use it, saving checks it."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import HOST, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.server_schema import option_problems, server_problems
from mailgate.domain.servers import Engine
from mailgate.engines.config import Secret, ServerConfig
from mailgate.engines.http.sendgrid import SendGridEngine
from mailgate.engines.probe import probe
from mailgate.errors import ConfigurationError

API_KEY = "SG.send-path-canary-93ad"
MESSAGE = (
    b"From: sender@example.com\r\nTo: ann@example.com\r\nSubject: Hi\r\n"
    b"Message-ID: <p1@mailgate.example>\r\n\r\nHello.\r\n"
)
ENVELOPE = Envelope("bounce@example.com", ("ann@example.com",))


def config(server: HttpServer, ca: str, send_path: str | None) -> ServerConfig:
    return ServerConfig(
        key="sg-path",
        engine=Engine.SENDGRID,
        api_key=Secret(API_KEY),
        api_base_url=server.url(HOST),
        ca_certificates=ca,
        timeout_seconds=2.0,
        options={"send_path": send_path} if send_path is not None else {},
    )


def relay(send_path: str = "/relay/v3/mail/send") -> Any:
    """A SendGrid-like API behind a prefix: scopes and Mail Send only under ``/relay``."""

    async def handler(request: HttpRequest) -> HttpResponse:
        prefix = send_path.removesuffix("/v3/mail/send")
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return HttpResponse.json(401, {"errors": [{"message": "bad key"}]})
        if (request.method, request.path) == ("GET", f"{prefix}/v3/scopes"):
            return HttpResponse.json(200, {"scopes": ["mail.send"]})
        if (request.method, request.path) == ("POST", send_path):
            if not request.json():
                return HttpResponse.json(400, {"errors": [{"message": "personalizations"}]})
            return HttpResponse(202, headers={"X-Message-Id": "sg-path-1"})
        return HttpResponse(404)

    return handler


@pytest.mark.parametrize("send_path", [None, "", "/relay/v3/mail/send", "/mail/send"])
async def test_delivery_posts_to_the_send_path(
    send_path: str | None, test_ca: TestCA, good_cert: CertFiles
) -> None:
    expected = send_path or "/v3/mail/send"
    server = HttpServer(relay(expected), ssl_context=good_cert.server_context())
    async with server:
        engine = SendGridEngine(config(server, test_ca.ca_pem, send_path), dialer=LoopbackDialer())
        result = await engine.deliver(ENVELOPE, MESSAGE)
        await engine.aclose()
    assert result.kind is OutcomeKind.SENT, result.reply
    assert result.remote_id == "sg-path-1"
    assert [(r.method, r.path) for r in server.requests] == [("POST", expected)]


async def test_probe_reads_scopes_next_to_the_send_path_and_checks_it(
    test_ca: TestCA, good_cert: CertFiles
) -> None:
    server = HttpServer(relay(), ssl_context=good_cert.server_context())
    async with server:
        report = await probe(
            config(server, test_ca.ca_pem, "/relay/v3/mail/send"), dialer=LoopbackDialer()
        )
    assert report.ok, report.error
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/relay/v3/scopes"),
        ("POST", "/relay/v3/mail/send"),
    ]
    # Nothing was sent: the only POST had an empty body, which the API refuses.
    assert server.requests[1].json() == {}


async def test_probe_with_the_default_path_sends_nothing(
    test_ca: TestCA, good_cert: CertFiles
) -> None:
    server = HttpServer(relay("/v3/mail/send"), ssl_context=good_cert.server_context())
    async with server:
        report = await probe(config(server, test_ca.ca_pem, None), dialer=LoopbackDialer())
    assert report.ok, report.error
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v3/scopes")]


async def test_probe_reports_a_wrong_send_path(test_ca: TestCA, good_cert: CertFiles) -> None:
    server = HttpServer(relay("/v3/mail/send"), ssl_context=good_cert.server_context())
    async with server:
        report = await probe(
            config(server, test_ca.ca_pem, "/v3/mail/sendx"), dialer=LoopbackDialer()
        )
    assert report.error is not None
    assert report.error.code.value == "invalid_configuration"
    assert "/v3/mail/sendx" in report.error.message and "send_path" in report.error.message


@pytest.mark.parametrize(
    "bad",
    [
        "v3/mail/send",
        "//evil.example/v3/mail/send",
        "/v3/mail/send?x=1",
        "/v3/mail/send#f",
        "/v3/../admin",
        "/v3//mail",
        "/v3/mail send",
        "/v3/%zz",
        "/",
        "https://api.sendgrid.com/v3/mail/send",
    ],
)
def test_invalid_send_paths_are_refused_on_save(bad: str) -> None:
    problems = server_problems({"engine": "sendgrid", "options": {"send_path": bad}})
    assert problems and problems[0][0] == "options.send_path", problems


def test_send_path_belongs_to_the_sendgrid_engine() -> None:
    assert server_problems({"engine": "sendgrid", "options": {"send_path": "/v3/mail/send"}}) == []
    problems = server_problems({"engine": "smtp", "options": {"send_path": "/v3/mail/send"}})
    assert problems == [("options.send_path", "applies to the sendgrid engine only")]
    assert option_problems({"send_path": "/relay/v3/mail/send"}) == []


def test_engine_refuses_a_stored_invalid_path() -> None:
    stored = ServerConfig(
        key="sg-old",
        engine=Engine.SENDGRID,
        api_key=Secret(API_KEY),
        options={"send_path": "no-slash"},
    )
    with pytest.raises(ConfigurationError, match=r"options\.send_path"):
        SendGridEngine(stored, dialer=LoopbackDialer())
