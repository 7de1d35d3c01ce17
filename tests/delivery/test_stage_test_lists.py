"""Test lists belong to an app and a stage; they may name users of the tenant."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.support.smtp_servers import RawSmtpServer

QA = ["qa1@test.example"]


def _rcpts(raw: bytes) -> list[bytes]:
    return sorted(line for line in raw.split(b"\r\n") if line.upper().startswith(b"RCPT TO"))


async def _put(tenant: Tenant, stage: str | None, **body: Any) -> dict[str, Any]:
    path = (
        f"{T}/apps/billing/test-list"
        if stage is None
        else (f"{T}/apps/billing/stages/{stage}/test-list")
    )
    r = await tenant.client.put(path, json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _user(tenant: Tenant, email: str) -> str:
    r = await tenant.client.post(
        f"{T}/users",
        json={"email": email, "password": "correct horse battery", "role": "viewer"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_production_goes_to_real_recipients_while_development_is_redirected(
    tenant: Tenant,
) -> None:
    await _put(tenant, "development", addresses=QA, active=True)
    await _put(tenant, "test", addresses=["qa2@test.example"], active=True)
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port, stages=["development", "test", "production"])
        prod = await tenant.send_ok(app="billing", stage="production", to=["real@example.com"])
        await drain(tenant.ctx)
        prod_wire = raw.received
        dev = await tenant.send_ok(app="billing", stage="development", to=["real@example.com"])
        await drain(tenant.ctx)
    assert _rcpts(prod_wire) == [b"RCPT TO:<real@example.com>"]
    assert _rcpts(raw.received[len(prod_wire) :]) == [b"RCPT TO:<qa1@test.example>"]
    assert (await tenant.message(prod))["redirected"] is False
    stored = await tenant.message(dev)
    assert stored["redirected"] is True
    assert stored["original_recipients"]["to"] == ["real@example.com"]


async def test_the_app_level_path_sets_every_stage_but_production(tenant: Tenant) -> None:
    body = await _put(tenant, None, addresses=QA, active=True)
    assert body == {"addresses": QA, "users": [], "active": True}
    for stage in ("development", "test"):
        r = await tenant.client.get(f"{T}/apps/billing/stages/{stage}/test-list", headers=ADMIN)
        assert r.json() == {"addresses": QA, "users": [], "active": True}
    r = await tenant.client.get(f"{T}/apps/billing/stages/production/test-list", headers=ADMIN)
    assert r.json() == {"addresses": [], "users": [], "active": False}
    app = (await tenant.client.get(f"{T}/apps/billing", headers=ADMIN)).json()
    assert app["test_list"]["active"] is True
    assert sorted(app["test_lists"]) == ["development", "test"]
    # A message naming no stage keeps using the app-level list.
    stored = await tenant.message(await tenant.send_ok(app="billing", to=["real@example.com"]))
    assert stored["redirected"] is True and stored["recipients"][0]["email"] == QA[0]
    # One stage changed alone leaves the others as they are.
    await _put(tenant, "test", addresses=[], active=False)
    r = await tenant.client.get(f"{T}/apps/billing/stages/development/test-list", headers=ADMIN)
    assert r.json()["active"] is True
    app = (await tenant.client.get(f"{T}/apps/billing", headers=ADMIN)).json()
    assert sorted(app["test_lists"]) == ["development"]


async def test_unknown_stage_is_404_and_a_deleted_stage_takes_its_lists(tenant: Tenant) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/stages/staging/test-list", json={"addresses": QA}, headers=ADMIN
    )
    assert r.status_code == 404
    r = await tenant.client.post(f"{T}/stages", json={"name": "staging"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    await _put(tenant, "staging", addresses=QA, active=True)
    r = await tenant.client.delete(f"{T}/stages/staging", headers=ADMIN)
    assert r.status_code == 204, r.text
    r = await tenant.client.post(f"{T}/stages", json={"name": "staging"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    r = await tenant.client.get(f"{T}/apps/billing/stages/staging/test-list", headers=ADMIN)
    assert r.json() == {"addresses": [], "users": [], "active": False}


async def test_a_listed_user_is_sent_to_at_the_address_it_has_now(tenant: Tenant) -> None:
    user_id = await _user(tenant, "dana@acme.example")
    body = await _put(tenant, "development", users=["Dana@acme.example"], active=True)
    assert body["users"] == [{"id": user_id, "email": "dana@acme.example"}]
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port, stages=["development"])
        await tenant.send_ok(app="billing", stage="development", to=["real@example.com"])
        await drain(tenant.ctx)
        first = raw.received
        r = await tenant.client.patch(
            f"{T}/users/{user_id}", json={"email": "dana.new@acme.example"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        await tenant.send_ok(app="billing", stage="development", to=["real@example.com"])
        await drain(tenant.ctx)
    assert _rcpts(first) == [b"RCPT TO:<dana@acme.example>"]
    assert _rcpts(raw.received[len(first) :]) == [b"RCPT TO:<dana.new@acme.example>"]
    # The same list by id, as the answer shows it, is accepted back.
    again = await _put(tenant, "development", users=[{"id": user_id}], active=True)
    assert again["users"] == [{"id": user_id, "email": "dana.new@acme.example"}]


async def test_a_deleted_user_is_left_out_with_a_warning(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = await _user(tenant, "erin@acme.example")
    await _put(tenant, "development", addresses=QA, users=[user_id], active=True)
    r = await tenant.client.delete(f"{T}/users/{user_id}", headers=ADMIN)
    assert r.status_code == 204
    listed = await tenant.client.get(
        f"{T}/apps/billing/stages/development/test-list", headers=ADMIN
    )
    assert listed.json()["users"] == [{"id": user_id, "email": None}]
    with caplog.at_level(logging.WARNING, logger="mailgate.test_lists"):
        sent = await tenant.send_ok(app="billing", stage="development", to=["real@example.com"])
    assert [r["email"] for r in (await tenant.message(sent))["recipients"]] == QA
    [warning] = [r for r in caplog.records if r.name == "mailgate.test_lists"]
    assert user_id in warning.getMessage() and "billing" in warning.getMessage()
    assert "development" in warning.getMessage()
    # A list left with nobody refuses the mail rather than send it to real recipients.
    only = await _user(tenant, "finn@acme.example")
    await _put(tenant, "development", users=[only], active=True)
    await tenant.client.delete(f"{T}/users/{only}", headers=ADMIN)
    r = await tenant.send(app="billing", stage="development", to=["real@example.com"])
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "test_list"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"users": ["nobody@acme.example"], "active": True}, "users[0]"),
        ({"addresses": QA, "users": ["01NOSUCHUSER"]}, "users[0]"),
        ({"users": [{"email": "nobody@acme.example"}]}, "users[0]"),
        ({"users": [""]}, "users[0]"),
        ({"addresses": ["not an address"]}, "addresses[0]"),
        ({"active": True}, "addresses"),
    ],
)
async def test_a_list_naming_nobody_known_is_422_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/stages/development/test-list", json=body, headers=ADMIN
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_another_tenants_user_cannot_be_listed(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/api/v1/tenants", json={"slug": "other", "name": "Other"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    r = await tenant.client.post(
        "/api/v1/tenants/other/users",
        json={"email": "gus@other.example", "password": "correct horse battery", "role": "viewer"},
        headers=ADMIN,
    )
    other_id = r.json()["id"]
    for entry in (other_id, "gus@other.example"):
        r = await tenant.client.put(
            f"{T}/apps/billing/test-list", json={"users": [entry]}, headers=ADMIN
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "users[0]"
