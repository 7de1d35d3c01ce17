"""Small API helpers for configuration tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_tenant(client: httpx.AsyncClient, slug: str = "acme") -> str:
    r = await client.post(
        "/api/v1/tenants", json={"slug": slug, "name": slug.title()}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return slug


async def token_for(
    client: httpx.AsyncClient, tenant: str, role: str, *, app: str | None = None
) -> dict[str, str]:
    body: dict[str, Any] = {"name": f"{role}-token", "role": role}
    if app:
        body["app"] = app
    r = await client.post(f"/api/v1/tenants/{tenant}/tokens", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


def smtp_server(name: str = "Primary", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "auth": "password",
        "username": "mailer@example.com",
        "password": "s3cret-Passw0rd",
    }
    body.update(overrides)
    return body


async def create_server(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/tenants/{tenant}/mail-servers",
        json=smtp_server(**overrides),
        headers=headers or ADMIN,
    )
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def field_names(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]
