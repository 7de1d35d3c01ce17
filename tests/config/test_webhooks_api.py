"""Webhook API: create, list, read, delete, enable; URL rules; write-only secret; roles."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from mailgate.services.context import Context
from tests.config.helpers import field_names, new_tenant, token_for
from tests.conftest import ADMIN

T = "/api/v1/tenants/acme"
PUBLIC = "https://93.184.216.34/hooks/mailgate"  # a public address literal: no DNS needed
CANARY = "canary-Webhook-Secret-7f3a9c"


@pytest.fixture
async def client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    from mailgate.web.app import create_app

    app = create_app(ctx)
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailgate.test") as c:
        await new_tenant(c)
        yield c


async def _create(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    payload = {"url": PUBLIC, "events": ["message.sent", "message.failed"], **body}
    return await client.post(f"{T}/webhooks", json=payload, headers=ADMIN)


async def test_create_list_get_delete(client: httpx.AsyncClient) -> None:
    r = await _create(client, secret=CANARY)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["url"] == PUBLIC
    assert created["events"] == ["message.sent", "message.failed"]
    assert created["status"] == "active"
    assert created["secret_set"] is True
    assert created["secret"] is None  # a given secret is never echoed
    assert created["disabled_reason"] is None and created["failing_since"] is None
    hook = created["id"]

    listed = await client.get(f"{T}/webhooks", headers=ADMIN)
    assert [w["id"] for w in listed.json()["items"]] == [hook]
    assert listed.json()["items"][0]["status"] == "active"
    one = await client.get(f"{T}/webhooks/{hook}", headers=ADMIN)
    assert one.status_code == 200 and one.json()["url"] == PUBLIC
    assert "secret" not in one.json()
    deliveries = await client.get(f"{T}/webhooks/{hook}/deliveries", headers=ADMIN)
    assert deliveries.status_code == 200 and deliveries.json()["items"] == []

    assert (await client.delete(f"{T}/webhooks/{hook}", headers=ADMIN)).status_code == 204
    assert (await client.get(f"{T}/webhooks/{hook}", headers=ADMIN)).status_code == 404
    assert (await client.delete(f"{T}/webhooks/{hook}", headers=ADMIN)).status_code == 404


async def test_generated_secret_is_shown_once(client: httpx.AsyncClient) -> None:
    r = await _create(client)
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    hook = r.json()["id"]
    for path in (f"{T}/webhooks", f"{T}/webhooks/{hook}", f"{T}/audit"):
        body = (await client.get(path, headers=ADMIN)).text
        assert secret not in body


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]


async def test_secret_canary_never_returned(client: httpx.AsyncClient) -> None:
    created = await _create(client, secret=CANARY)
    hook = created.json()["id"]
    await client.post(f"{T}/webhooks/{hook}/enable", headers=ADMIN)
    bodies = [created.text]
    for path in (f"{T}/webhooks", f"{T}/webhooks/{hook}", f"{T}/audit", "/openapi.json"):
        r = await client.get(path, headers=ADMIN)
        assert r.status_code == 200, path
        bodies.append(r.text)
    for body in bodies:
        for form in _forms(CANARY):
            assert form not in body
    audit = (await client.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    actions = [e["action"] for e in audit if e["object"]["type"] == "webhook"]
    assert actions == ["webhook.enable", "webhook.create"]
    assert all(e["object"]["name"] == PUBLIC for e in audit if e["object"]["type"] == "webhook")


REFUSED_BY_POLICY = [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://192.168.1.20:8443/hook",
    "http://93.184.216.34/hook",  # cleartext to a host the allow-list does not name
]


@pytest.mark.parametrize("url", REFUSED_BY_POLICY)
async def test_url_refused_by_network_policy(client: httpx.AsyncClient, url: str) -> None:
    r = await _create(client, url=url, secret=CANARY)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["url"]
    message = r.json()["errors"][0]["message"]
    assert "network policy" in message or "allow-list" in message
    assert "169.254" not in message and "10.0.0.1" not in message  # generic, reveals nothing
    listed = await client.get(f"{T}/webhooks", headers=ADMIN)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hook",
        "https://user:pw@93.184.216.34/hook",
        "https://93.184.216.34/hook#frag",
        "https://93.184.216.34/ho ok",
        "https:///nohost",
        "not a url",
    ],
)
async def test_malformed_url_is_422(client: httpx.AsyncClient, url: str) -> None:
    r = await _create(client, url=url)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["url"]


async def test_http_to_an_allow_listed_host_is_accepted(client: httpx.AsyncClient) -> None:
    r = await _create(client, url="http://127.0.0.1:9/hook")
    assert r.status_code == 201, r.text


async def test_events_and_secret_are_validated(client: httpx.AsyncClient) -> None:
    r = await _create(client, events=["message.opened"])
    assert r.status_code == 422 and field_names(r) == ["events[0]"]
    r = await _create(client, events=[])
    assert r.status_code == 422 and field_names(r) == ["events"]
    r = await _create(client, secret="short")
    assert r.status_code == 422 and field_names(r) == ["secret"]
    r = await _create(client, colour="blue")
    assert r.status_code == 422 and field_names(r) == ["colour"]


async def test_enable_checks_the_url_again(client: httpx.AsyncClient, ctx: Context) -> None:
    hook = (await _create(client, url="http://127.0.0.1:9/hook")).json()["id"]
    ok = await client.post(f"{T}/webhooks/{hook}/enable", headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["status"] == "active"
    ctx.policy = replace(ctx.policy, allowed_networks=())
    refused = await client.post(f"{T}/webhooks/{hook}/enable", headers=ADMIN)
    assert refused.status_code == 422 and field_names(refused) == ["url"]


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        ("owner", 200, 201),
        ("admin", 200, 201),
        ("developer", 200, 403),
        ("viewer", 200, 403),
        ("sender", 403, 403),
    ],
)
async def test_roles(client: httpx.AsyncClient, role: str, read: int, write: int) -> None:
    hook = (await _create(client)).json()["id"]
    headers = await token_for(client, "acme", role)
    assert (await client.get(f"{T}/webhooks", headers=headers)).status_code == read
    assert (await client.get(f"{T}/webhooks/{hook}", headers=headers)).status_code == read
    body = {"url": PUBLIC, "events": ["message.sent"]}
    assert (await client.post(f"{T}/webhooks", json=body, headers=headers)).status_code == write
    manage = 204 if write == 201 else 403
    enable = await client.post(f"{T}/webhooks/{hook}/enable", headers=headers)
    assert enable.status_code == (200 if write == 201 else 403)
    assert (await client.delete(f"{T}/webhooks/{hook}", headers=headers)).status_code == manage


async def test_other_tenants_see_404(client: httpx.AsyncClient) -> None:
    hook = (await _create(client)).json()["id"]
    await new_tenant(client, "beta")
    beta_admin = await token_for(client, "beta", "admin")
    # Another tenant's principal on this tenant's paths: 404, never 403.
    for method, path in [
        ("GET", f"{T}/webhooks"),
        ("GET", f"{T}/webhooks/{hook}"),
        ("DELETE", f"{T}/webhooks/{hook}"),
        ("POST", f"{T}/webhooks/{hook}/enable"),
    ]:
        r = await client.request(method, path, headers=beta_admin)
        assert r.status_code == 404, (method, path)
    # This tenant's id under the other tenant's path is unknown there.
    for method, path in [
        ("GET", f"/api/v1/tenants/beta/webhooks/{hook}"),
        ("DELETE", f"/api/v1/tenants/beta/webhooks/{hook}"),
        ("GET", f"/api/v1/tenants/beta/webhooks/{hook}/deliveries"),
    ]:
        r = await client.request(method, path, headers=beta_admin)
        assert r.status_code == 404, (method, path)
    assert (await client.get(f"{T}/webhooks/{hook}", headers=ADMIN)).status_code == 200
