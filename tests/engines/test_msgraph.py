"""The Microsoft Graph engine against a loopback identity platform and Graph API."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from email import message_from_bytes
from typing import Any

import pytest
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import HOST, LoopbackDialer
from tests.support.tls import CertFiles, TestCA

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import Engine
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.http.msgraph import GraphEngine, graph_mime
from mailgate.errors import ConfigurationError
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import IPAddress, NetworkPolicy

CLIENT_SECRET = "canary-graph-secret-0d9e"
UPN = "sender@contoso.example"
SEND_PATH = f"/v1.0/users/{UPN}/sendMail"
TOKEN_PATH = "/contoso/oauth2/v2.0/token"
DATA = (
    b"From: Sender <sender@contoso.example>\r\nTo: Ann <ann@example.com>\r\n"
    b"Cc: bob@example.com\r\nSubject: Hi\r\nMessage-ID: <g1@mailgate.example>\r\n"
    b"\r\nHello\r\n"
)
ENVELOPE = Envelope("sender@contoso.example", ("ann@example.com", "bob@example.com"))


class FakeMicrosoft:
    """Token endpoint and Graph on one server; ``graph`` answers the send requests in turn."""

    def __init__(self, *graph: HttpResponse, token: HttpResponse | None = None) -> None:
        self.graph = list(graph)
        self.token = token
        self.issued = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == TOKEN_PATH:
            if self.token is not None:
                return self.token
            self.issued += 1
            body = {"access_token": f"token-{self.issued}", "expires_in": 3600}
            return HttpResponse.json(200, body)
        return self.graph.pop(0) if len(self.graph) > 1 else self.graph[0]


def sends(server: HttpServer) -> list[HttpRequest]:
    return [r for r in server.requests if r.path != TOKEN_PATH]


def tokens(server: HttpServer) -> list[HttpRequest]:
    return [r for r in server.requests if r.path == TOKEN_PATH]


@pytest.fixture
def config(test_ca: TestCA) -> Callable[..., ServerConfig]:
    def make(server: HttpServer, **overrides: Any) -> ServerConfig:
        base = server.url(HOST)
        values: dict[str, Any] = {
            "key": "graph-1",
            "engine": Engine.MSGRAPH,
            "api_base_url": base,
            "sender_upn": UPN,
            "ca_certificates": test_ca.ca_pem,
            "timeout_seconds": 2.0,
            "oauth": OAuthConfig(
                provider="microsoft",
                client_id="app-id",
                client_secret=Secret(CLIENT_SECRET),
                tenant_id="contoso",
                token_url=f"{base}{TOKEN_PATH}",
            ),
        }
        values.update(overrides)
        return ServerConfig(**values)

    return make


async def deliver(
    config: Callable[..., ServerConfig], server: HttpServer, count: int = 1
) -> list[Any]:
    engine = GraphEngine(config(server), dialer=LoopbackDialer())
    try:
        return [await engine.deliver(ENVELOPE, DATA) for _ in range(count)]
    finally:
        await engine.aclose()


async def test_mime_send_shape_and_token_cache(config: Any, good_cert: CertFiles) -> None:
    fake = FakeMicrosoft(HttpResponse(202, headers={"request-id": "req-1"}))
    async with HttpServer(fake, ssl_context=good_cert.server_context()) as server:
        first, second = await deliver(config, server, 2)
    assert first.kind is second.kind is OutcomeKind.SENT
    assert first.code == 202
    assert first.details["request_id"] == "req-1"
    assert first.tls_version is not None
    assert len(tokens(server)) == 1  # cached for the second delivery
    assert tokens(server)[0].form()["scope"] == "https://graph.microsoft.com/.default"
    request = sends(server)[0]
    assert (request.method, request.path) == ("POST", SEND_PATH)
    assert request.headers["authorization"] == "Bearer token-1"
    assert request.headers["content-type"] == "text/plain"
    assert base64.b64decode(request.body) == DATA  # the headers already match the envelope
    for result in (first, second):
        assert "token-1" not in result.transcript
        assert CLIENT_SECRET not in result.transcript + result.reply


async def test_401_refreshes_the_token_once(config: Any) -> None:
    fake = FakeMicrosoft(HttpResponse(401), HttpResponse(202))
    async with HttpServer(fake) as server:
        (result,) = await deliver(lambda s: _plain(config, s), server)
    assert result.kind is OutcomeKind.SENT
    assert [r.headers["authorization"] for r in sends(server)] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert "fetching a new one" in result.transcript


def _plain(config: Callable[..., ServerConfig], server: HttpServer, **extra: Any) -> ServerConfig:
    """The config over plain HTTP on 127.0.0.1 (token endpoint too)."""
    base = server.url()
    oauth = config(server).oauth
    assert oauth is not None
    return config(
        server,
        api_base_url=base,
        oauth=OAuthConfig(
            provider="microsoft",
            client_id=oauth.client_id,
            client_secret=oauth.client_secret,
            tenant_id="contoso",
            token_url=f"{base}{TOKEN_PATH}",
        ),
        **extra,
    )


def graph_error(status: int, code: str, message: str, **headers: str) -> HttpResponse:
    return HttpResponse.json(status, {"error": {"code": code, "message": message}}, **headers)


@pytest.mark.parametrize(
    ("responses", "kind", "reply_part", "retry", "sent_count"),
    [
        ([HttpResponse(202)], OutcomeKind.SENT, "accepted", None, 1),
        (
            [graph_error(400, "ErrorInvalidRecipients", "bad rcpt")],
            OutcomeKind.FAILED,
            "ErrorInvalidRecipients: bad rcpt",
            None,
            1,
        ),
        (
            [graph_error(401, "InvalidAuthenticationToken", "expired")] * 2,
            OutcomeKind.AUTH_FAILED,
            "InvalidAuthenticationToken",
            None,
            2,
        ),
        (
            [graph_error(403, "ErrorAccessDenied", "Access is denied")],
            OutcomeKind.AUTH_FAILED,
            "ErrorAccessDenied",
            None,
            1,
        ),
        (
            [graph_error(429, "ApplicationThrottled", "slow down", Retry_After="17")],
            OutcomeKind.DEFERRED,
            "ApplicationThrottled",
            17.0,
            1,
        ),
        (
            [graph_error(503, "ServiceUnavailable", "busy", Retry_After="9")],
            OutcomeKind.DEFERRED,
            "ServiceUnavailable",
            9.0,
            1,
        ),
    ],
    ids=["202", "400", "401-after-refresh", "403", "429", "503"],
)
async def test_status_table(
    config: Any,
    responses: list[HttpResponse],
    kind: OutcomeKind,
    reply_part: str,
    retry: float | None,
    sent_count: int,
) -> None:
    async with HttpServer(FakeMicrosoft(*responses)) as server:
        engine = GraphEngine(_plain(config, server), dialer=LoopbackDialer())
        result = await engine.deliver(ENVELOPE, DATA)
        await engine.aclose()
    assert result.kind is kind
    assert reply_part in result.reply
    assert result.retry_after == retry
    assert len(sends(server)) == sent_count


@pytest.mark.parametrize("error", ["invalid_grant", "invalid_client"])
async def test_token_refusal_is_auth_failed(config: Any, error: str) -> None:
    refusal = HttpResponse.json(400, {"error": error, "error_description": "AADSTS: no"})
    async with HttpServer(FakeMicrosoft(HttpResponse(202), token=refusal)) as server:
        engine = GraphEngine(_plain(config, server), dialer=LoopbackDialer())
        result = await engine.deliver(ENVELOPE, DATA)
        await engine.aclose()
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert result.details["phase"] == "token"
    assert error in result.reply
    assert sends(server) == []


async def test_token_endpoint_down_is_deferred(config: Any) -> None:
    busy = HttpResponse.json(503, {"error": "temporarily_unavailable"}, Retry_After="12")
    async with HttpServer(FakeMicrosoft(HttpResponse(202), token=busy)) as server:
        engine = GraphEngine(_plain(config, server), dialer=LoopbackDialer())
        result = await engine.deliver(ENVELOPE, DATA)
        await engine.aclose()
    assert (result.kind, result.connection_error, result.retry_after) == (
        OutcomeKind.DEFERRED,
        True,
        12.0,
    )


class NoConnector:
    def __init__(self) -> None:
        self.attempts: list[tuple[IPAddress, int]] = []

    async def connect(self, address: IPAddress, port: int) -> socket.socket:
        self.attempts.append((address, port))
        raise AssertionError("no connection may be attempted")


async def test_metadata_address_is_refused_without_connecting(config: Any) -> None:
    connector = NoConnector()
    server = HttpServer(FakeMicrosoft(HttpResponse(202)))
    meta = "https://169.254.169.254"
    oauth = OAuthConfig(
        provider="microsoft",
        client_id="a",
        client_secret=Secret(CLIENT_SECRET),
        token_url=f"{meta}/token",
    )
    engine = GraphEngine(
        config(server, api_base_url=meta, oauth=oauth),
        dialer=GuardedDialer(NetworkPolicy(), connector=connector),
    )
    result = await engine.deliver(ENVELOPE, DATA)
    await engine.aclose()
    assert connector.attempts == []
    assert result.kind is OutcomeKind.DEFERRED
    assert "network policy" in result.reply


def test_graph_mime_follows_the_envelope() -> None:
    """A test list or a partial retry: headers name exactly the envelope's recipients."""
    assert graph_mime(ENVELOPE, DATA) is DATA
    envelope = Envelope("s@contoso.example", ("ann@example.com", "qa@test.example"))
    rewritten = message_from_bytes(graph_mime(envelope, DATA))
    assert rewritten["To"] == "Ann <ann@example.com>"
    assert rewritten["Cc"] is None
    assert rewritten["Bcc"] == "qa@test.example"
    assert rewritten["Subject"] == "Hi"
    assert rewritten.get_payload() == "Hello\r\n"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"sender_upn": None}, "sender_upn"), ({"oauth": None}, "OAuth")],
)
def test_configuration_errors(config: Any, overrides: dict[str, Any], words: str) -> None:
    server = HttpServer(FakeMicrosoft(HttpResponse(202)))
    with pytest.raises(ConfigurationError, match=words):
        GraphEngine(config(server, **overrides), dialer=LoopbackDialer())


async def test_an_echoed_token_or_secret_is_redacted_from_the_reply(config: Any) -> None:
    echo = graph_error(400, "ErrorInvalidRequest", f"token token-1, secret {CLIENT_SECRET}")
    async with HttpServer(FakeMicrosoft(echo)) as server:
        engine = GraphEngine(_plain(config, server), dialer=LoopbackDialer())
        result = await engine.deliver(ENVELOPE, DATA)
        await engine.aclose()
    assert result.kind is OutcomeKind.FAILED
    assert "ErrorInvalidRequest" in result.reply
    for text in [result.reply, result.transcript, *(r.reply for r in result.recipients)]:
        assert "token-1" not in text
        assert CLIENT_SECRET not in text
