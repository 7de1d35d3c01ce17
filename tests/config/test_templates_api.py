"""Templates through the API: create and replace with versions, validation in the sandbox,
roles (developers manage templates) and tenant isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.config.helpers import field_names, new_tenant, token_for
from tests.conftest import ADMIN

T = "/api/v1/tenants/acme"
SOURCE = {
    "subject": "Invoice {{ number }}",
    "text": "Dear {{ name }},\n{% for line in lines %}- {{ line }}\n{% endfor %}",
    "html": "<p>Dear {{ name }}</p>",
}


@pytest.fixture
async def acme(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await new_tenant(client)
    return client


async def test_template_lifecycle_and_versions(acme: httpx.AsyncClient) -> None:
    r = await acme.put(f"{T}/templates/invoice", json=SOURCE, headers=ADMIN)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "invoice" and first["version"] == 1
    assert {k: first[k] for k in SOURCE} == SOURCE
    r = await acme.put(
        f"{T}/templates/invoice", json={"subject": "Invoice {{ number }}"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["version"] == 2 and second["text"] is None and second["html"] is None
    assert second["created_at"] == first["created_at"]
    assert (await acme.get(f"{T}/templates/invoice", headers=ADMIN)).json() == second
    await acme.put(f"{T}/templates/alpha", json=SOURCE, headers=ADMIN)
    listed = (await acme.get(f"{T}/templates", headers=ADMIN)).json()
    assert [t["name"] for t in listed["items"]] == ["alpha", "invoice"]
    paged = (await acme.get(f"{T}/templates?limit=1", headers=ADMIN)).json()
    assert [t["name"] for t in paged["items"]] == ["alpha"] and paged["next_cursor"] == "alpha"
    assert (await acme.delete(f"{T}/templates/invoice", headers=ADMIN)).status_code == 204
    assert (await acme.get(f"{T}/templates/invoice", headers=ADMIN)).status_code == 404
    assert (await acme.delete(f"{T}/templates/invoice", headers=ADMIN)).status_code == 404
    audit = (await acme.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    actions = [e["action"] for e in audit if e["object"]["name"] == "invoice"]
    assert actions == ["template.delete", "template.update", "template.create"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject": "Hi {{ name"}, "subject"),
        ({"subject": "ok", "html": "<p>{% if %}</p>"}, "html"),
        ({"subject": "ok", "text": "{{ ''.__class__.__mro__ }}"}, "text"),
        ({"subject": "ok", "text": "{{ x['__globals__'] }}"}, "text"),
        ({"subject": "ok", "html": "{{ x|attr('_private') }}"}, "html"),
        ({"text": "no subject"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"subject": "ok", "body": "unknown field"}, "body"),
    ],
)
async def test_template_validation(
    acme: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await acme.put(f"{T}/templates/bad", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [field]
    assert (await acme.get(f"{T}/templates/bad", headers=ADMIN)).status_code == 404


async def test_template_name_is_checked(acme: httpx.AsyncClient) -> None:
    r = await acme.put(f"{T}/templates/{'x' * 101}", json=SOURCE, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["name"]
    r = await acme.put(f"{T}/templates/-dash", json=SOURCE, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["name"]


async def test_roles_and_tenant_isolation(acme: httpx.AsyncClient) -> None:
    developer = await token_for(acme, "acme", "developer")
    r = await acme.put(f"{T}/templates/welcome", json=SOURCE, headers=developer)
    assert r.status_code == 201, r.text
    assert (await acme.get(f"{T}/templates/welcome", headers=developer)).status_code == 200
    viewer = await token_for(acme, "acme", "viewer")
    assert (await acme.get(f"{T}/templates/welcome", headers=viewer)).status_code == 200
    assert (await acme.get(f"{T}/templates", headers=viewer)).status_code == 200
    r = await acme.put(f"{T}/templates/welcome", json=SOURCE, headers=viewer)
    assert r.status_code == 403
    assert (await acme.delete(f"{T}/templates/welcome", headers=viewer)).status_code == 403
    sender = await token_for(acme, "acme", "sender")
    assert (await acme.get(f"{T}/templates/welcome", headers=sender)).status_code == 403
    await new_tenant(acme, "other")
    other = await token_for(acme, "other", "owner")
    assert (await acme.get(f"{T}/templates/welcome", headers=other)).status_code == 404
    r = await acme.put(f"{T}/templates/welcome", json=SOURCE, headers=other)
    assert r.status_code == 404
    # Each tenant has its own namespace of names.
    r = await acme.get("/api/v1/tenants/other/templates/welcome", headers=other)
    assert r.status_code == 404
    assert (await acme.delete(f"{T}/templates/welcome", headers=developer)).status_code == 204
