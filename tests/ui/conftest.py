"""Fixtures for the web UI route tests: the application with the UI mounted, signed-in users."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from mailgate.services.context import Context
from mailgate.web.app import create_app
from mailgate.web.ui import UiOptions, mount_ui
from tests.conftest import ADMIN

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
def ui_app(ctx: Context) -> FastAPI:
    app = create_app(ctx)
    mount_ui(app, ctx, options=UiOptions(secure_cookies=False))
    return app


@dataclass
class Browser:
    """An HTTP client with its own cookie jar, like one browser."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def get(self, url: str, **kw: object) -> httpx.Response:
        r = await self.client.get(url, **kw)  # type: ignore[arg-type]
        if "csrf_token" in r.text:
            self.csrf = csrf_of(r.text)
        return r

    async def post(self, url: str, data: dict[str, object] | None = None, **kw: object):  # type: ignore[no-untyped-def]
        body = {"csrf_token": self.csrf, **(data or {})}
        return await self.client.post(url, data=body, **kw)  # type: ignore[arg-type]

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/login")
        return await self.post("/login", {"email": email, "password": password})


@pytest.fixture
async def browser_factory(ui_app: FastAPI) -> AsyncIterator[object]:
    clients: list[httpx.AsyncClient] = []

    def make() -> Browser:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=ui_app), base_url="http://mailgate.test"
        )
        clients.append(client)
        return Browser(client)

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def api(ui_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ui_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailgate.test") as c:
        yield c


async def add_tenant(api: httpx.AsyncClient, slug: str) -> None:
    r = await api.post("/api/v1/tenants", json={"slug": slug, "name": slug.title()}, headers=ADMIN)
    assert r.status_code == 201, r.text


async def add_user(api: httpx.AsyncClient, tenant: str, email: str, role: str) -> None:
    r = await api.post(
        f"/api/v1/tenants/{tenant}/users",
        json={"email": email, "password": PASSWORD, "role": role},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
