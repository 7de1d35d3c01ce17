"""An email account's short description: set, changed, cleared; bad text names the field."""

from __future__ import annotations

import httpx
import pytest

from tests.config.helpers import create_server, field_names, new_tenant
from tests.conftest import ADMIN

ACCOUNTS = "/api/v1/tenants/acme/email-accounts"


async def _server(client: httpx.AsyncClient) -> str:
    await new_tenant(client)
    return str((await create_server(client, "acme"))["id"])


async def _ops(client: httpx.AsyncClient, server_id: str, description: str) -> httpx.Response:
    return await client.post(
        ACCOUNTS,
        json={
            "address": "ops@acme.example",
            "display_name": "Ops",
            "mail_server_id": server_id,
            "description": description,
        },
        headers=ADMIN,
    )


async def test_description_is_stored_changed_and_cleared(client: httpx.AsyncClient) -> None:
    server_id = await _server(client)
    r = await _ops(client, server_id, "  Alerts from the billing run  ")
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["description"] == "Alerts from the billing run"
    r = await client.patch(
        f"{ACCOUNTS}/{account['id']}", json={"description": "Nightly reports"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["description"] == "Nightly reports"
    r = await client.patch(f"{ACCOUNTS}/{account['id']}", json={"reply_to": None}, headers=ADMIN)
    assert r.json()["description"] == "Nightly reports"  # untouched when not given
    r = await client.patch(f"{ACCOUNTS}/{account['id']}", json={"description": ""}, headers=ADMIN)
    assert r.json()["description"] == ""
    plain = await client.post(
        ACCOUNTS,
        json={"address": "b@acme.example", "display_name": "B", "mail_server_id": server_id},
        headers=ADMIN,
    )
    assert plain.json()["description"] == ""


@pytest.mark.parametrize("bad", ["two\nlines", "tab\there", "x" * 201])
async def test_bad_description_is_422_naming_it(client: httpx.AsyncClient, bad: str) -> None:
    server_id = await _server(client)
    r = await _ops(client, server_id, bad)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["description"]
