"""JSON values that are not text or numbers (lone UTF-16 surrogates, NaN, Infinity) are
refused with a 422 naming the field, and never reach storage."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant

LONE = "\ud800"


async def post_json(
    client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str], method: str = "POST"
) -> httpx.Response:
    """Send ``body`` as Python's JSON writer spells it: ``"\\ud800"``, ``NaN``, ``Infinity``."""
    return await client.request(
        method,
        url,
        content=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


async def assert_log_readable(tenant: Tenant) -> None:
    listed = await tenant.client.get(f"{T}/messages", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    for item in listed.json()["items"]:
        one = await tenant.client.get(f"{T}/messages/{item['id']}", headers=ADMIN)
        assert one.status_code == 200, one.text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": f"a{LONE}b"}, "text"),
        ({"html": f"<p>{LONE}</p>"}, "html"),
        ({"subject": f"Hi {LONE}"}, "subject"),
        ({"headers": {"X-Campaign": f"7{LONE}"}}, "headers.X-Campaign"),
        ({"headers": {f"X-{LONE}": "7"}}, "headers"),
        ({"to": [f"a{LONE}@example.com"]}, "to[0]"),
        ({"to": [{"email": "a@example.com", "name": LONE}]}, "to[0].name"),
        ({"template": {"name": "invite", "variables": {"who": LONE}}}, "template.variables.who"),
        ({"metadata": {"order": LONE}}, "metadata.order"),
        ({"metadata": {"deep": [{"x": LONE}]}}, "metadata.deep[0].x"),
        ({"metadata": {LONE: 1}}, "metadata"),
        ({"metadata": {"note": "a\u0000b"}}, "metadata.note"),
        ({"metadata": {"score": float("nan")}}, "metadata.score"),
        ({"metadata": {"score": float("inf")}}, "metadata.score"),
        ({"metadata": {"score": [float("-inf")]}}, "metadata.score[0]"),
    ],
)
async def test_send_refuses_values_that_are_not_json_text(
    tenant: Tenant, fields: dict[str, Any], field: str
) -> None:
    body = {"to": ["rcpt@example.com"], "subject": "Hi", "text": "Hello.", **fields}
    r = await post_json(tenant.client, f"{T}/messages", body, tenant.sender)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    await assert_log_readable(tenant)


async def test_batch_names_the_item_and_its_field(tenant: Tenant) -> None:
    good = {"to": ["rcpt@example.com"], "subject": "Hi", "text": "Hello."}
    bad = {**good, "metadata": {"n": float("nan")}}
    r = await post_json(
        tenant.client, f"{T}/messages/batch", {"messages": [good, bad]}, tenant.sender
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["messages[1].metadata.n"]
    r = await post_json(
        tenant.client,
        f"{T}/messages/batch",
        {"messages": [good, {**good, "text": LONE}]},
        tenant.sender,
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["messages[1].text"]
    await assert_log_readable(tenant)


async def test_template_source_refuses_a_lone_surrogate(tenant: Tenant) -> None:
    r = await post_json(
        tenant.client,
        f"{T}/templates/invite",
        {"subject": "Hi", "text": f"Hello {LONE}"},
        ADMIN,
        method="PUT",
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["text"]
    listed = await tenant.client.get(f"{T}/templates", headers=ADMIN)
    assert listed.status_code == 200 and listed.json()["items"] == []


async def test_configuration_bodies_refuse_a_lone_surrogate_and_nul(tenant: Tenant) -> None:
    r = await post_json(
        tenant.client, f"{T}/tokens", {"name": f"ci{LONE}", "role": "sender"}, ADMIN
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["name"]
    r = await post_json(
        tenant.client, f"{T}/mail-servers", {"name": f"relay{LONE}", "engine": "capture"}, ADMIN
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["name"]
    # PostgreSQL stores no NUL in text: refused before it reaches the database.
    r = await post_json(
        tenant.client, f"{T}/mail-servers", {"name": "relay\u0000", "engine": "capture"}, ADMIN
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["name"]
    for listing in ("tokens", "mail-servers"):
        r = await tenant.client.get(f"{T}/{listing}", headers=ADMIN)
        assert r.status_code == 200, r.text


async def test_an_unknown_field_named_with_a_lone_surrogate_is_a_422(tenant: Tenant) -> None:
    body = {"to": ["rcpt@example.com"], "text": "Hello.", f"x{LONE}": 1}
    r = await post_json(tenant.client, f"{T}/messages", body, tenant.sender)
    assert r.status_code == 422, r.text


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_metadata_nested_deeper_than_the_log_can_show_is_refused(tenant: Tenant) -> None:
    for depth in (33, 300):
        r = await tenant.send(metadata=nested(depth))
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["metadata"]
    r = await tenant.send(metadata={"list": [nested(30)]})
    assert r.status_code == 202, r.text
    await assert_log_readable(tenant)
