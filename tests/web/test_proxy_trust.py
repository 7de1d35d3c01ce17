"""Forwarded headers are believed only from the proxies ``MAILGATE_TRUSTED_PROXIES`` lists."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request

from mailgate.settings import Settings
from mailgate.web.serving import proxy_options
from tests.web.live_http import serving
from tests.web.test_openapi_and_serve import served  # noqa: F401  (a real `mailgate serve`)

FORWARDED = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}


def test_serve_believes_no_forwarded_header_from_loopback_by_default(
    served: tuple[str, str],  # noqa: F811
) -> None:
    url, _ = served
    r = httpx.get(f"{url}/login", headers=FORWARDED)
    assert r.status_code == 200
    # Believed, X-Forwarded-Proto would make the request HTTPS and the cookie Secure.
    cookie = r.headers["set-cookie"]
    assert "mailgate_session=" in cookie
    assert "secure" not in cookie.lower()


def _echo() -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        return {
            "client": request.client.host if request.client else "",
            "scheme": request.url.scheme,
        }

    return app


async def test_only_listed_proxies_are_believed() -> None:
    for settings, expected in (
        (Settings(), {"client": "127.0.0.1", "scheme": "http"}),
        (Settings(trusted_proxies=["10.0.0.0/8"]), {"client": "127.0.0.1", "scheme": "http"}),
        (Settings(trusted_proxies=["127.0.0.1"]), {"client": "203.0.113.5", "scheme": "https"}),
    ):
        async with serving(_echo(), **proxy_options(settings)) as port, httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/whoami", headers=FORWARDED)
        assert r.json() == expected, settings.trusted_proxies
