"""SMTP XOAUTH2 end to end: aiosmtpd checks the bearer string, a loopback token endpoint."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult
from tests.engines.conftest import ConfigFactory
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import USER, AiosmtpdServer, LoopbackDialer, _Recorder
from tests.support.tls import CertFiles

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import AuthKind, Security
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.factory import EngineCache, engine_for
from mailgate.engines.oauth.tokens import token_source_for
from mailgate.engines.smtp.xoauth2 import XOAuth2Engine

CLIENT_SECRET = "canary-xoauth2-secret-44aa"
ENVELOPE = Envelope("sender@mailgate.test", ("rcpt@example.com",))
DATA = b"From: sender@mailgate.test\r\nTo: rcpt@example.com\r\nSubject: x\r\n\r\nbody\r\n"


class XOAuth2Recorder(_Recorder):
    """aiosmtpd handler adding AUTH XOAUTH2 (developers.google.com/gmail/imap/xoauth2-protocol).

    Accepts ``user=USER\\x01auth=Bearer <token>\\x01\\x01`` for a token in ``valid``; on
    rejection it sends the JSON error as a 334 challenge, waits for the empty line, then 535.
    """

    def __init__(self, valid: set[str]) -> None:
        super().__init__()
        self.valid = valid
        self.blobs: list[str] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]).decode()
        self.blobs.append(blob)
        fields = blob.split("\x01")
        user = fields[0].removeprefix("user=")
        bearer = fields[1].removeprefix("auth=Bearer ")
        ok = fields[2:] == ["", ""] and user == USER and bearer in self.valid
        if ok:
            return AuthResult(success=True, auth_data=user)
        error = json.dumps(
            {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        )
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False)


class TokenEndpoint:
    def __init__(self, refusal: str | None = None) -> None:
        self.refusal = refusal
        self.issued = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.refusal is not None:
            return HttpResponse.json(400, {"error": self.refusal, "error_description": "no"})
        self.issued += 1
        return HttpResponse.json(200, {"access_token": f"token-{self.issued}", "expires_in": 3600})


def xoauth2_config(make_config: ConfigFactory, smtp: AiosmtpdServer, tokens: HttpServer) -> Any:
    return make_config(
        smtp.port,
        security=Security.STARTTLS,
        auth=AuthKind.XOAUTH2,
        username=USER,
        oauth=OAuthConfig(
            provider="microsoft",
            client_id="app",
            client_secret=Secret(CLIENT_SECRET),
            token_url=f"{tokens.url()}/tenant/oauth2/v2.0/token",
        ),
    )


async def run(config: ServerConfig, count: int = 1) -> list[Any]:
    engine = engine_for(config, dialer=LoopbackDialer())
    assert isinstance(engine, XOAuth2Engine)
    try:
        return [await engine.deliver(ENVELOPE, DATA) for _ in range(count)]
    finally:
        await engine.aclose()


async def test_rejected_token_is_refreshed_once(
    make_config: ConfigFactory, good_cert: CertFiles
) -> None:
    recorder = XOAuth2Recorder(valid={"token-2"})
    endpoint = TokenEndpoint()
    smtp = AiosmtpdServer(mode="starttls", cert=good_cert, _recorder=recorder)
    async with smtp, HttpServer(endpoint) as tokens:
        first, second = await run(xoauth2_config(make_config, smtp, tokens), count=2)
    assert first.kind is OutcomeKind.SENT
    assert first.details["token_refreshed"] == "true"
    assert second.kind is OutcomeKind.SENT  # the refreshed token is cached and pooled
    assert endpoint.issued == 2
    assert recorder.blobs == [
        f"user={USER}\x01auth=Bearer token-1\x01\x01",
        f"user={USER}\x01auth=Bearer token-2\x01\x01",
    ]
    assert len(smtp.messages) == 2
    for result in (first, second):
        for secret in ("token-1", "token-2", CLIENT_SECRET):
            assert secret not in result.transcript


async def test_second_rejection_is_auth_failed(
    make_config: ConfigFactory, good_cert: CertFiles
) -> None:
    recorder = XOAuth2Recorder(valid=set())
    endpoint = TokenEndpoint()
    smtp = AiosmtpdServer(mode="starttls", cert=good_cert, _recorder=recorder)
    async with smtp, HttpServer(endpoint) as tokens:
        (result,) = await run(xoauth2_config(make_config, smtp, tokens))
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert result.code == 535
    assert endpoint.issued == 2
    assert smtp.messages == []


async def test_invalid_grant_is_auth_failed_without_retry(
    make_config: ConfigFactory, good_cert: CertFiles
) -> None:
    recorder = XOAuth2Recorder(valid={"token-1"})
    endpoint = TokenEndpoint(refusal="invalid_grant")
    smtp = AiosmtpdServer(mode="starttls", cert=good_cert, _recorder=recorder)
    async with smtp, HttpServer(endpoint) as tokens:
        (result,) = await run(xoauth2_config(make_config, smtp, tokens))
        assert len(tokens.requests) == 1
    assert result.kind is OutcomeKind.AUTH_FAILED
    assert "invalid_grant" in result.reply
    assert recorder.blobs == []
    assert CLIENT_SECRET not in result.transcript + result.reply


async def test_engine_cache_builds_token_sources_per_server(
    make_config: ConfigFactory, good_cert: CertFiles
) -> None:
    recorder = XOAuth2Recorder(valid={"token-1"})
    built: list[str] = []
    dialer = LoopbackDialer()

    def sources(config: ServerConfig) -> Any:
        built.append(config.key)
        return token_source_for(config, dialer=dialer)

    smtp = AiosmtpdServer(mode="starttls", cert=good_cert, _recorder=recorder)
    async with smtp, HttpServer(TokenEndpoint()) as tokens:
        cache = EngineCache(dialer=dialer, token_sources=sources)
        config = xoauth2_config(make_config, smtp, tokens)
        result = await cache.get(config).deliver(ENVELOPE, DATA)
        await cache.aclose()
    assert result.kind is OutcomeKind.SENT
    assert built == [config.key]
