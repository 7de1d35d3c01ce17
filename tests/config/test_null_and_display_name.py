"""Explicit nulls for fields that cannot be cleared, and display names with controls: 422."""

from __future__ import annotations

import httpx
import pytest

from tests.config.helpers import create_server, field_names, new_tenant
from tests.conftest import ADMIN

BASE = "/api/v1/tenants/acme/mail-servers"
ACCOUNTS = "/api/v1/tenants/acme/email-accounts"

NOT_NULLABLE = [
    "engine",
    "security",
    "auth",
    "min_tls_version",
    "port",
    "name",
    "verify_certificate",
    "allow_insecure_auth",
    "timeout_seconds",
    "max_connections",
    "is_default",
]


@pytest.mark.parametrize("field", NOT_NULLABLE)
async def test_patch_with_null_for_a_required_field_is_422(
    client: httpx.AsyncClient, field: str
) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    r = await client.patch(f"{BASE}/{server['id']}", json={field: None}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [field]
    after = (await client.get(f"{BASE}/{server['id']}", headers=ADMIN)).json()
    assert after["version"] == server["version"]


@pytest.mark.parametrize("field", ["provider", "rate_limit_per_minute", "stages", "options"])
async def test_patch_with_null_clears_a_clearable_field(
    client: httpx.AsyncClient, field: str
) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    r = await client.patch(f"{BASE}/{server['id']}", json={field: None}, headers=ADMIN)
    assert r.status_code == 200, r.text


BAD_NAMES = ["Acme\r\nBcc: x@evil.example", "Acme\tOps", "Acme\x7f", "Acme\x85", "Acme\x9b"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_display_name_with_controls_is_refused_on_save(
    client: httpx.AsyncClient, name: str
) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    body = {"address": "ops@acme.example", "display_name": name, "mail_server_id": server["id"]}
    r = await client.post(ACCOUNTS, json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["display_name"]
    body["display_name"] = "Acme Ops"
    r = await client.post(ACCOUNTS, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    r = await client.patch(
        f"{ACCOUNTS}/{r.json()['id']}", json={"display_name": name}, headers=ADMIN
    )
    assert r.status_code == 422, r.text
    assert field_names(r) == ["display_name"]
