"""Sending with a template: rendering and HTML escaping, request fields that win over the
template's, and refusals (unknown template, missing variable, sandbox escape) that queue
nothing."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant

INVITE = {
    "subject": "Welcome, {{ name }}",
    "text": "Hello {{ name }},\nyour code is {{ code }}.\n",
    "html": "<p>Hello <b>{{ name }}</b>, your code is {{ code }}.</p>\n",
}


async def put_template(tenant: Tenant, name: str = "invite", **source: Any) -> None:
    r = await tenant.client.put(f"{T}/templates/{name}", json=source or INVITE, headers=ADMIN)
    assert r.status_code in (200, 201), r.text


async def captured(tenant: Tenant, message_id: str) -> EmailMessage:
    raw = (await tenant.client.get(f"{T}/messages/{message_id}/raw", headers=ADMIN)).content
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


async def queued(tenant: Tenant) -> int:
    r = await tenant.client.get(f"{T}/messages/stats", headers=ADMIN)
    return sum(int(v) for v in r.json().values())


async def test_template_renders_with_html_escaped(tenant: Tenant) -> None:
    await put_template(tenant)
    variables = {"name": "Ann <b>&</b> Co", "code": 42}
    message_id = await tenant.send_ok(
        subject=None, text=None, template={"name": "invite", "variables": variables}
    )
    message = await captured(tenant, message_id)
    assert message["Subject"] == "Welcome, Ann <b>&</b> Co"
    assert part(message, "plain") == "Hello Ann <b>&</b> Co,\nyour code is 42.\n"
    html = part(message, "html")
    assert "<b>Ann &lt;b&gt;&amp;&lt;/b&gt; Co</b>" in html and "<b>&</b>" not in html
    summary = await tenant.message(message_id)
    assert summary["subject"] == "Welcome, Ann <b>&</b> Co"


async def test_request_fields_win_over_the_template(tenant: Tenant) -> None:
    await put_template(tenant)
    ref = {"name": "invite", "variables": {"name": "Bo", "code": 1}}
    message_id = await tenant.send_ok(subject="Explicit subject", text=None, template=ref)
    message = await captured(tenant, message_id)
    assert message["Subject"] == "Explicit subject"
    assert part(message, "plain").startswith("Hello Bo,")


async def test_a_new_version_is_used_by_the_next_message(tenant: Tenant) -> None:
    await put_template(tenant)
    await put_template(tenant, subject="v2 for {{ name }}", text="v2\n")
    ref = {"name": "invite", "variables": {"name": "Cy"}}
    message_id = await tenant.send_ok(subject=None, text=None, template=ref)
    message = await captured(tenant, message_id)
    assert message["Subject"] == "v2 for Cy"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"name": "nope", "variables": {}}, "template.name"),
        ({"name": "invite", "variables": {"name": "Di"}}, "template.variables.code"),
        (
            {"name": "invite", "variables": {"name": "a\r\nBcc: x@evil.test", "code": 1}},
            "template.variables.name",
        ),
    ],
)
async def test_refusals_name_the_field_and_queue_nothing(
    tenant: Tenant, template: dict[str, Any], field: str
) -> None:
    await put_template(tenant)
    r = await tenant.send(subject=None, text=None, template=template)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert await queued(tenant) == 0


async def test_sandbox_escape_is_refused_at_send(tenant: Tenant) -> None:
    # The attribute name is computed, so only the sandbox can see it (at render time).
    await put_template(tenant, "probe", subject="x", text="{{ obj|attr(attr_name) }}")
    ref = {"name": "probe", "variables": {"obj": "s", "attr_name": "__class__"}}
    r = await tenant.send(subject=None, text=None, template=ref)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"].startswith("template")
    assert "__class__" not in r.text or "sandbox" in r.text
    assert "<class" not in r.text
    assert await queued(tenant) == 0


async def test_batch_renders_each_item_and_refuses_only_the_bad_ones(tenant: Tenant) -> None:
    await put_template(tenant)
    messages = [
        {
            "to": [f"r{i}@example.com"],
            "template": {"name": "invite", "variables": {"name": f"N{i}", "code": i}},
        }
        for i in range(55)
    ]
    messages[7]["template"] = {"name": "invite", "variables": {"name": "no code"}}
    r = await tenant.client.post(
        f"{T}/messages/batch", json={"messages": messages}, headers=tenant.sender
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["status"] for i in items].count(202) == 54
    assert items[7]["status"] == 422
    assert items[7]["errors"][0]["field"] == "template.variables.code"
    message = await captured(tenant, items[54]["id"])
    assert message["Subject"] == "Welcome, N54"
