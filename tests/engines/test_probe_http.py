"""Test connection for SendGrid and Graph: credentials checked on loopback APIs, nothing sent."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import pytest
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import HOST, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.servers import Engine
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.http.msgraph import WARN_MAILBOX_UNCHECKED
from mailgate.engines.probe import probe
from mailgate.engines.probe_report import ProbeSecurity, StepName
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import IPAddress, NetworkPolicy

API_KEY = "SG.probe-canary-7e21"
CLIENT_SECRET = "probe-graph-secret-31bf"
UPN = "sender@contoso.example"


def sendgrid(server: HttpServer, ca: str | None = None, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "key": "sg",
        "engine": Engine.SENDGRID,
        "api_key": Secret(API_KEY),
        "api_base_url": server.url(HOST if ca else "127.0.0.1"),
        "ca_certificates": ca,
        "timeout_seconds": 2.0,
    }
    values.update(overrides)
    return ServerConfig(**values)


def graph(server: HttpServer) -> ServerConfig:
    base = server.url()
    oauth = OAuthConfig(
        provider="microsoft",
        client_id="app",
        client_secret=Secret(CLIENT_SECRET),
        token_url=f"{base}/t/oauth2/v2.0/token",
    )
    return ServerConfig(
        key="graph",
        engine=Engine.MSGRAPH,
        api_base_url=base,
        sender_upn=UPN,
        oauth=oauth,
        timeout_seconds=2.0,
    )


def scopes(*names: str) -> HttpResponse:
    return HttpResponse.json(200, {"scopes": list(names)})


async def run(config: ServerConfig, dialer: Any = None) -> Any:
    return await probe(config, dialer=dialer or LoopbackDialer())


async def test_sendgrid_ok_over_tls(test_ca: TestCA, good_cert: CertFiles) -> None:
    answer = scopes("mail.send", "alerts.read")
    async with HttpServer.answering(answer, ssl_context=good_cert.server_context()) as server:
        report = await run(sendgrid(server, test_ca.ca_pem))
    assert report.ok, report.error
    assert report.authenticated
    assert report.security is ProbeSecurity.HTTPS
    assert report.tls is not None and report.tls.certificate is not None
    assert HOST in report.tls.certificate.subject
    assert [s.name for s in report.steps] == [StepName.API]
    (request,) = server.requests
    assert (request.method, request.path) == ("GET", "/v3/scopes")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert report.to_dict()["server"] is None


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (scopes("alerts.read"), "permission_missing"),
        (HttpResponse.json(401, {"errors": [{"message": f"bad key {API_KEY}"}]}), "auth_failed"),
        (HttpResponse.json(403, {"errors": [{"message": "forbidden"}]}), "permission_missing"),
        (HttpResponse(503), "auth_temporary_failure"),
    ],
    ids=["no-mail-send", "401", "403", "503"],
)
async def test_sendgrid_failures(answer: HttpResponse, code: str) -> None:
    async with HttpServer.answering(answer) as server:
        report = await run(sendgrid(server))
    assert not report.ok
    assert report.error.code.value == code
    assert report.error.hint
    assert API_KEY not in json.dumps(report.to_dict())
    assert all(r.method == "GET" for r in server.requests)


async def test_connection_refused() -> None:
    server = HttpServer.answering(scopes("mail.send"))
    async with server:
        pass
    report = await run(sendgrid(server))
    assert report.error is not None
    assert report.error.code.value == "connection_refused"
    assert f"127.0.0.1:{server.port}" in report.error.hint


async def test_untrusted_certificate(good_cert: CertFiles) -> None:
    answer = scopes("mail.send")
    async with HttpServer.answering(answer, ssl_context=good_cert.server_context()) as server:
        report = await run(sendgrid(server, api_base_url=server.url(HOST)))
    assert report.error is not None
    assert report.error.code.value == "certificate_untrusted"


async def test_timeout() -> None:
    async with HttpServer.answering("stall") as server:
        report = await run(sendgrid(server, timeout_seconds=0.3))
    assert report.error is not None
    assert report.error.code.value == "timeout"


class NoConnector:
    def __init__(self) -> None:
        self.attempts: list[tuple[IPAddress, int]] = []

    async def connect(self, address: IPAddress, port: int) -> socket.socket:
        self.attempts.append((address, port))
        raise AssertionError("no connection may be attempted")


async def test_metadata_destination_is_refused() -> None:
    connector = NoConnector()
    config = sendgrid(HttpServer.answering(scopes()), api_base_url="https://169.254.169.254")
    report = await run(config, GuardedDialer(NetworkPolicy(), connector=connector))
    assert connector.attempts == []
    assert report.error is not None
    assert report.error.code.value == "destination_refused"


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


class FakeGraph:
    def __init__(
        self,
        user: HttpResponse,
        *,
        claims: dict[str, Any] | None = None,
        token: HttpResponse | None = None,
    ) -> None:
        self.user = user
        self.token = token or HttpResponse.json(
            200, {"access_token": jwt(claims or {"roles": ["Mail.Send"]}), "expires_in": 3600}
        )

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.token if request.path.endswith("/token") else self.user


@pytest.mark.parametrize(
    ("fake", "code", "warned"),
    [
        (FakeGraph(HttpResponse.json(200, {"id": "1"})), None, False),
        (FakeGraph(HttpResponse(403)), None, True),
        (
            FakeGraph(HttpResponse(403), claims={"roles": ["User.Read.All"]}),
            "permission_missing",
            False,
        ),
        (FakeGraph(HttpResponse(403), claims={"scp": "Mail.Send User.Read"}), None, True),
        (FakeGraph(HttpResponse(404)), "invalid_configuration", False),
        (FakeGraph(HttpResponse(401)), "auth_failed", False),
        (
            FakeGraph(
                HttpResponse(200),
                token=HttpResponse.json(
                    401, {"error": "invalid_client", "error_description": "bad secret"}
                ),
            ),
            "auth_failed",
            False,
        ),
    ],
    ids=[
        "user-read",
        "403-app-mail-send",
        "403-no-mail-send",
        "403-delegated",
        "404",
        "401",
        "invalid-client",
    ],
)
async def test_graph(fake: FakeGraph, code: str | None, warned: bool) -> None:
    async with HttpServer(fake) as server:
        report = await run(graph(server))
    assert (report.error.code.value if report.error else None) == code
    assert (WARN_MAILBOX_UNCHECKED.format(upn=UPN) in report.warnings) is warned
    assert report.security is ProbeSecurity.INSECURE  # plain HTTP to the loopback fake
    assert not any("sendMail" in r.path for r in server.requests)
    assert CLIENT_SECRET not in json.dumps(report.to_dict())
    names = [s.name for s in report.steps]
    assert names[0] is StepName.TOKEN
    if code != "auth_failed" or names[-1] is StepName.API:
        user = [r for r in server.requests if r.path.startswith("/v1.0/users/")]
        assert all(r.method == "GET" for r in user)
