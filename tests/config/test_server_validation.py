"""Saving validates everything delivery needs: hosts, options and bounds (one schema)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.config.helpers import create_server, field_names, new_tenant, smtp_server
from tests.conftest import ADMIN

BASE = "/api/v1/tenants/acme/mail-servers"

BAD_HOSTS = [
    "not a host!!",
    "smtp://mail.example.com:587",
    "mail.example.com:587",
    "mail.example.com/path",
    "-leading.example.com",
    "a..b.example.com",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_bad_hosts_are_refused_on_create_and_patch(
    client: httpx.AsyncClient, host: str
) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(host=host), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["host"]
    server = await create_server(client, "acme")
    r = await client.patch(
        f"{BASE}/{server['id']}", json={"host": host, "password": "new-pass-1"}, headers=ADMIN
    )
    assert r.status_code == 422, r.text
    assert field_names(r) == ["host"]


@pytest.mark.parametrize(
    "host", ["smtp.example.com", "localhost", "192.0.2.10", "2001:db8::1", "mail-1.example.co"]
)
async def test_good_hosts_are_saved(client: httpx.AsyncClient, host: str) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme", host=host)
    assert server["host"] == host


BAD_OPTIONS: list[tuple[dict[str, str], str]] = [
    ({"ehlo_name": "relay_01.corp"}, "options.ehlo_name"),
    ({"ehlo_name": "two words"}, "options.ehlo_name"),
    ({"disable_auth_plain": "maybe"}, "options.disable_auth_plain"),
    ({"disable_pipelining": "sometimes"}, "options.disable_pipelining"),
    ({"connect_timeout": "soon"}, "options.connect_timeout"),
    ({"idle_timeout": "-3"}, "options.idle_timeout"),
    ({"max_messages_per_connection": "0"}, "options.max_messages_per_connection"),
    ({"ehlo-name": "mx.example.com"}, "options.ehlo-name"),
    ({"no_such_option": "1"}, "options.no_such_option"),
]


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS)
async def test_bad_options_are_refused_naming_the_key(
    client: httpx.AsyncClient, options: dict[str, str], field: str
) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(options=options), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [field]
    server = await create_server(client, "acme")
    r = await client.patch(f"{BASE}/{server['id']}", json={"options": options}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [field]


async def test_unknown_option_message_lists_the_known_keys(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(options={"helo": "x"}), headers=ADMIN)
    assert r.status_code == 422
    assert "ehlo_name" in r.json()["errors"][0]["message"]


async def test_good_options_are_saved(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    options = {
        "ehlo_name": "mx.acme.example",
        "disable_auth_plain": "true",
        "disable_pipelining": "no",
        "connect_timeout": "7.5",
        "greeting_timeout": "10",
        "idle_timeout": "30",
        "max_messages_per_connection": "100",
    }
    server = await create_server(client, "acme", options=options)
    assert server["options"] == options


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rate_limit_per_minute": 10_000_001}, "rate_limit_per_minute"),
        ({"ca_certificates": "x" * 200_001}, "ca_certificates"),
    ],
)
async def test_api_bounds_match_the_config_file(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    await new_tenant(client)
    r = await client.post(BASE, json=smtp_server(**change), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in field_names(r)


@pytest.mark.parametrize("host", ["imaps://imap.example.com", "imap.example.com:993", "a b"])
async def test_bad_imap_hosts_are_refused(client: httpx.AsyncClient, host: str) -> None:
    await new_tenant(client)
    server = await create_server(client, "acme")
    body = {
        "address": "ops@acme.example",
        "display_name": "Ops",
        "mail_server_id": server["id"],
        "imap": {"host": host, "username": "ops", "password": "imap-secret-5"},
    }
    r = await client.post("/api/v1/tenants/acme/email-accounts", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["imap.host"]
