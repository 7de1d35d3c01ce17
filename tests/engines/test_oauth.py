"""OAuth token sources against a loopback token endpoint: grants, caching, refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.smtp_servers import LoopbackDialer

from mailgate.domain.servers import AuthKind, Engine
from mailgate.engines.config import OAuthConfig, Secret, ServerConfig
from mailgate.engines.oauth.tokens import (
    GRAPH_SCOPE,
    JWT_BEARER,
    OUTLOOK_APP_SCOPE,
    TokenRefused,
    TokenUnavailable,
    token_source_for,
)
from mailgate.errors import ConfigurationError
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy

CLIENT_SECRET = "canary-client-secret-91ab"
USER_PASSWORD = "canary-user-password-22cd"
SA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SA_EMAIL = "mailer@project.iam.gserviceaccount.com"


def service_account_json() -> str:
    pem = SA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "client_email": SA_EMAIL,
            "private_key": pem,
            "private_key_id": "kid-1",
            "token_uri": "https://attacker.example/token",
        }
    )


def token(value: str = "at-1", expires_in: int = 3600) -> HttpResponse:
    body = {"access_token": value, "token_type": "Bearer", "expires_in": expires_in}
    return HttpResponse.json(200, body)


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_jwt(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, claims, signature = assertion.split(".")
    SA_KEY.public_key().verify(
        unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return json.loads(unb64(header)), json.loads(unb64(claims))


def google_config(server: HttpServer, **oauth: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "provider": "google",
        "service_account_json": Secret(service_account_json()),
        "subject": "sender@example.com",
        "token_url": f"{server.url()}/token",
    }
    settings.update(oauth)
    return ServerConfig(
        key="gmail", host="smtp.gmail.com", auth=AuthKind.XOAUTH2, oauth=OAuthConfig(**settings)
    )


def microsoft_config(
    server: HttpServer, *, engine: Engine = Engine.SMTP, **oauth: Any
) -> ServerConfig:
    settings: dict[str, Any] = {
        "provider": "microsoft",
        "client_id": "app-id",
        "client_secret": Secret(CLIENT_SECRET),
        "tenant_id": "contoso",
        "token_url": f"{server.url()}/contoso/oauth2/v2.0/token",
    }
    settings.update(oauth)
    return ServerConfig(
        key="o365",
        engine=engine,
        host="smtp.office365.com",
        auth=AuthKind.XOAUTH2,
        oauth=OAuthConfig(**settings),
        sender_upn="sender@contoso.example",
    )


async def test_google_jwt_bearer_grant(dialer: LoopbackDialer) -> None:
    async with HttpServer.answering(token("ya29.first")) as server:
        source = token_source_for(google_config(server), dialer=dialer)
        before = int(time.time())
        assert (await source.access_token()).reveal() == "ya29.first"
        await source.aclose()
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/token")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = request.form()
    assert set(form) == {"grant_type", "assertion"}
    assert form["grant_type"] == JWT_BEARER
    header, claims = verify_jwt(form["assertion"])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert claims["iss"] == SA_EMAIL
    assert claims["scope"] == "https://mail.google.com/"
    assert claims["aud"] == f"{server.url()}/token"  # never the key file's token_uri
    assert claims["sub"] == "sender@example.com"
    assert before <= claims["iat"] <= before + 5
    assert claims["exp"] - claims["iat"] == 3600


async def test_microsoft_client_credentials(dialer: LoopbackDialer) -> None:
    async with HttpServer.answering(token()) as server:
        source = token_source_for(microsoft_config(server), dialer=dialer)
        await source.access_token()
        await source.aclose()
    (request,) = server.requests
    assert request.path == "/contoso/oauth2/v2.0/token"
    assert request.form() == {
        "grant_type": "client_credentials",
        "client_id": "app-id",
        "client_secret": CLIENT_SECRET,
        "scope": OUTLOOK_APP_SCOPE,
    }


async def test_microsoft_password_grant_for_graph(dialer: LoopbackDialer) -> None:
    async with HttpServer.answering(token()) as server:
        config = microsoft_config(
            server,
            engine=Engine.MSGRAPH,
            grant="password",
            username="sender@contoso.example",
            password=Secret(USER_PASSWORD),
        )
        source = token_source_for(config, dialer=dialer)
        await source.access_token()
        await source.aclose()
    assert server.requests[0].form() == {
        "grant_type": "password",
        "client_id": "app-id",
        "client_secret": CLIENT_SECRET,
        "scope": GRAPH_SCOPE,
        "username": "sender@contoso.example",
        "password": USER_PASSWORD,
    }


def test_default_microsoft_endpoint() -> None:
    config = microsoft_config(HttpServer.answering(token()), token_url=None)
    source = token_source_for(config, dialer=LoopbackDialer())
    assert source.endpoint == "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"


async def test_cached_until_shortly_before_expiry_and_invalidated(
    dialer: LoopbackDialer,
) -> None:
    now = [1000.0]
    answers = (token("t1", 600), token("t2", 600), token("t3", 600))
    async with HttpServer.answering(*answers) as server:
        source = token_source_for(microsoft_config(server), dialer=dialer, clock=lambda: now[0])
        first = await source.access_token()
        now[0] += 500  # 100 s left: still used
        assert await source.access_token() == first
        now[0] += 45  # within the last minute: refreshed
        second = await source.access_token()
        source.invalidate(first)  # a stale rejection does not drop the newer token
        assert await source.access_token() == second
        source.invalidate(second)
        third = await source.access_token()
        await source.aclose()
    assert [t.reveal() for t in (first, second, third)] == ["t1", "t2", "t3"]
    assert source.fetched == 3


async def test_concurrent_callers_share_one_request(dialer: LoopbackDialer) -> None:
    async def slow(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.05)
        return token("shared")

    async with HttpServer(slow) as server:
        source = token_source_for(microsoft_config(server), dialer=dialer)
        tokens = await asyncio.gather(*(source.access_token() for _ in range(5)))
        await source.aclose()
    assert {t.reveal() for t in tokens} == {"shared"}
    assert len(server.requests) == 1


@pytest.mark.parametrize("error", ["invalid_grant", "invalid_client", "unauthorized_client"])
async def test_refusals_are_configuration_errors(dialer: LoopbackDialer, error: str) -> None:
    body = {
        "error": error,
        "error_description": f"AADSTS7000215: Invalid client secret {CLIENT_SECRET}.\r\nTrace",
    }
    async with HttpServer.answering(HttpResponse.json(400, body)) as server:
        source = token_source_for(microsoft_config(server), dialer=dialer)
        with pytest.raises(TokenRefused) as caught:
            await source.access_token()
        await source.aclose()
    assert isinstance(caught.value, ConfigurationError)
    assert caught.value.error == error
    assert error in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    assert "Trace" not in str(caught.value)
    assert CLIENT_SECRET not in repr(source)


async def test_unavailable_endpoint(dialer: LoopbackDialer) -> None:
    busy = HttpResponse.json(503, {"error": "temporarily_unavailable"}, Retry_After="30")
    async with HttpServer.answering(busy) as server:
        source = token_source_for(microsoft_config(server), dialer=dialer)
        with pytest.raises(TokenUnavailable) as caught:
            await source.access_token()
        await source.aclose()
    assert isinstance(caught.value, OSError)
    assert caught.value.retry_after == 30.0
    closed = HttpServer.answering(token())
    async with closed:
        pass
    source = token_source_for(microsoft_config(closed), dialer=dialer)
    with pytest.raises(TokenUnavailable, match="could not reach"):
        await source.access_token()
    await source.aclose()


async def test_token_endpoint_passes_the_network_policy() -> None:
    dialer = GuardedDialer(NetworkPolicy())  # loopback is not allowed by default
    config = microsoft_config(HttpServer.answering(token()), token_url="https://127.0.0.1/t")
    source = token_source_for(config, dialer=dialer)
    with pytest.raises(TokenUnavailable) as caught:
        await source.access_token()
    await source.aclose()
    assert caught.value.policy


@pytest.mark.parametrize(
    ("oauth", "words"),
    [
        ({"provider": "yahoo"}, "google or microsoft"),
        ({"provider": "google"}, "service_account_json"),
        ({"provider": "google", "service_account_json": Secret("{")}, "not valid JSON"),
        ({"provider": "microsoft", "client_id": "a"}, "client_secret"),
        ({"provider": "microsoft", "client_id": "a", "client_secret": Secret("s")}, "tenant_id"),
        (
            {
                "provider": "microsoft",
                "client_id": "a",
                "client_secret": Secret("s"),
                "tenant_id": "t",
                "grant": "password",
            },
            "username",
        ),
        (
            {
                "provider": "microsoft",
                "client_id": "a",
                "client_secret": Secret("s"),
                "token_url": "http://login.example/token",
            },
            "https",
        ),
    ],
)
def test_configuration_errors(oauth: dict[str, Any], words: str) -> None:
    config = ServerConfig(key="k", auth=AuthKind.XOAUTH2, oauth=OAuthConfig(**oauth))
    with pytest.raises(ConfigurationError, match=words):
        token_source_for(config, dialer=LoopbackDialer())
