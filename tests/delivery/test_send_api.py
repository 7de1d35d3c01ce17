"""The send API: validation that rejects, idempotency, batches, routing, log, cancel, retry."""

from __future__ import annotations

import base64
import email
from email import policy

import httpx
import pytest

from tests.config.helpers import field_names
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain


async def test_accept_compose_and_capture(tenant: Tenant) -> None:
    r = await tenant.send(
        to=["a@example.com", {"email": "b@example.com", "name": "Bee"}],
        cc=["c@example.com"],
        bcc=["d@example.com"],
        subject="Invoice 7",
        text="Plain body",
        html="<p>HTML body</p>",
        headers={"X-Campaign": "7"},
        attachments=[
            {
                "filename": "a.txt",
                "content_type": "text/plain",
                "content": base64.b64encode(b"attached").decode(),
            }
        ],
        metadata={"order": 42},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["message_id"].startswith("<") and body["message_id"].endswith("@acme.example>")
    raw = (await tenant.client.get(f"{T}/messages/{body['id']}/raw", headers=ADMIN)).content
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Message-ID"] == body["message_id"]
    assert parsed["Bcc"] is None and b"d@example.com" not in raw
    assert parsed["X-Campaign"] == "7"
    assert parsed["From"] == "Acme <noreply@acme.example>"
    await drain(tenant.ctx)
    message = await tenant.message(body["id"])
    assert message["status"] == "sent"
    assert message["metadata"] == {"order": 42}
    assert [r["email"] for r in message["recipients"]] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ]
    assert all(r["status"] == "sent" for r in message["recipients"])
    [attempt] = message["attempts"]
    assert attempt["engine"] == "capture" and attempt["outcome"] == "sent"
    assert attempt["code"] == 250 and attempt["possible_duplicate"] is False


@pytest.mark.parametrize(
    ("fields", "field", "status"),
    [
        ({"subject": "Hi\r\nBcc: x@evil.example"}, "subject", 422),
        ({"subject": "=?utf-8?q?Hi=0D=0ABcc:_x@evil.example?="}, "subject", 422),
        ({"headers": {"X-Ok": "a\nb"}}, "headers.X-Ok", 422),
        ({"headers": {"Bcc": "x@evil.example"}}, "headers.Bcc", 422),
        ({"to": ["a@example.com\r\nRCPT TO:<x@evil.example>"]}, "to[0]", 422),
        ({"to": ["a@example.com, b@example.com"]}, "to[0]", 422),
        ({"to": ["a@b@example.com"]}, "to[0]", 422),
        ({"to": [{"email": "a@example.com", "name": "A\u0000B"}]}, "to[0].name", 422),
        ({"to": []}, "to", 422),
        ({"to": [f"r{i}@example.com" for i in range(101)]}, "to", 422),
        (
            {"attachments": [{"filename": "../x", "content": "aGk="}]},
            "attachments[0].filename",
            422,
        ),
        (
            {"attachments": [{"filename": "a\r\n.txt", "content": "aGk="}]},
            "attachments[0].filename",
            422,
        ),
        ({"attachments": [{"filename": "a.bin", "content": "***"}]}, "attachments[0].content", 422),
        ({"from": "stranger@acme.example"}, "from", 422),
        ({"stage": "nope"}, "stage", 422),
        ({"app": "nope"}, "app", 422),
        ({"surprise": 1}, "surprise", 422),
    ],
)
async def test_rejects_never_repairs(
    tenant: Tenant, fields: dict[str, object], field: str, status: int
) -> None:
    r = await tenant.send(**fields)
    assert r.status_code == status, r.text
    assert field in field_names(r), r.json()
    stats = (await tenant.client.get(f"{T}/messages/stats", headers=ADMIN)).json()
    assert stats["queued"] == 0


async def test_oversized_body_is_413(tenant: Tenant) -> None:
    from dataclasses import replace

    tenant.ctx.policy = replace(tenant.ctx.policy, max_message_bytes=2048)
    r = await tenant.send(text="x" * 5000)
    assert r.status_code == 413
    assert field_names(r) == ["text"]


async def test_idempotency_key(tenant: Tenant, client: httpx.AsyncClient) -> None:
    body = {"to": ["a@example.com"], "subject": "Once", "text": "x"}
    headers = {**tenant.sender, "Idempotency-Key": "order-1"}
    first = await client.post(f"{T}/messages", json=body, headers=headers)
    again = await client.post(f"{T}/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    other = await client.post(f"{T}/messages", json={**body, "text": "y"}, headers=headers)
    assert other.status_code == 409 and field_names(other) == ["Idempotency-Key"]
    listed = (await client.get(f"{T}/messages", headers=ADMIN)).json()["items"]
    assert len(listed) == 1
    # Keys are scoped per tenant.
    await client.post("/api/v1/tenants", json={"slug": "beta", "name": "Beta"}, headers=ADMIN)
    server = await client.post(
        "/api/v1/tenants/beta/mail-servers",
        json={"name": "C", "engine": "capture", "is_default": True},
        headers=ADMIN,
    )
    await client.post(
        "/api/v1/tenants/beta/email-accounts",
        json={
            "address": "n@beta.example",
            "display_name": "B",
            "mail_server_id": server.json()["id"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    beta = await client.post(
        "/api/v1/tenants/beta/messages",
        json=body,
        headers={**ADMIN, "Idempotency-Key": "order-1"},
    )
    assert beta.status_code == 202 and beta.json()["id"] != first.json()["id"]


async def test_batch_commits_valid_items_and_reports_each(tenant: Tenant) -> None:
    items = [
        {"to": ["a@example.com"], "subject": "1", "text": "x"},
        {"to": ["not an address"], "subject": "2", "text": "x"},
        {"to": ["c@example.com"], "subject": "3", "html": "<b>x</b>"},
    ]
    r = await tenant.client.post(
        f"{T}/messages/batch", json={"messages": items}, headers=tenant.sender
    )
    assert r.status_code == 200, r.text
    results = r.json()["items"]
    assert [x["status"] for x in results] == [202, 422, 202]
    assert results[1]["errors"][0]["field"] == "to[0]"
    listed = (await tenant.client.get(f"{T}/messages", headers=ADMIN)).json()["items"]
    assert sorted(m["subject"] for m in listed) == ["1", "3"]
    too_many = {"messages": [items[0]] * 501}
    r = await tenant.client.post(f"{T}/messages/batch", json=too_many, headers=tenant.sender)
    assert r.status_code == 422 and field_names(r) == ["messages"]


async def test_routing_by_stage_then_account_and_an_account_without_server_cannot_send(
    tenant: Tenant,
) -> None:
    c = tenant.client
    stage_server = await c.post(
        f"{T}/mail-servers",
        json={"name": "Prod", "engine": "capture", "stages": ["production"]},
        headers=ADMIN,
    )
    default = await c.post(
        f"{T}/mail-servers",
        json={"name": "Default", "engine": "capture", "is_default": True},
        headers=ADMIN,
    )
    account = (await c.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"][0]
    by_stage = await tenant.message(await tenant.send_ok(stage="production"))
    assert by_stage["server_id"] == stage_server.json()["id"]
    by_account = await tenant.message(await tenant.send_ok(stage="test"))
    assert by_account["server_id"] == account["mail_server_id"]
    r = await c.delete(
        f"{T}/mail-servers/{account['mail_server_id']}?accounts_to=none&mail_to=reroute",
        headers=ADMIN,
    )
    assert r.status_code == 204, r.text
    # SPEC.md: deleting a server leaves its accounts without outbound capability; neither
    # the tenant default nor the stage's server sends for them.
    for stage in ("test", "production"):
        r = await tenant.send(stage=stage)
        assert r.status_code == 422 and field_names(r) == ["from"]
        assert "has no mail server" in r.json()["detail"]
    assert default.status_code == 201


async def test_app_bound_token(tenant: Tenant) -> None:
    c = tenant.client
    await c.post(f"{T}/apps", json={"name": "crm"}, headers=ADMIN)
    r = await c.post(
        f"{T}/tokens", json={"name": "b", "role": "sender", "app": "billing"}, headers=ADMIN
    )
    bound = {"Authorization": f"Bearer {r.json()['token']}"}
    body = {"to": ["a@example.com"], "subject": "s", "text": "t"}
    ok = await c.post(f"{T}/messages", json=body, headers=bound)
    assert ok.status_code == 202
    msg = await tenant.message(ok.json()["id"])
    apps = {a["name"]: a["id"] for a in (await c.get(f"{T}/apps", headers=ADMIN)).json()["items"]}
    assert msg["app_id"] == apps["billing"]
    r = await c.post(f"{T}/messages", json={**body, "app": "crm"}, headers=bound)
    assert r.status_code == 422 and field_names(r) == ["app"]


async def test_sender_role_cannot_read_logs(tenant: Tenant) -> None:
    r = await tenant.client.get(f"{T}/messages", headers=tenant.sender)
    assert r.status_code == 403


async def test_cancel_and_retry(tenant: Tenant) -> None:
    message_id = await tenant.send_ok(send_at="2099-01-01T00:00:00Z")
    r = await tenant.client.post(f"{T}/messages/{message_id}/cancel", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await tenant.client.post(f"{T}/messages/{message_id}/cancel", headers=ADMIN)
    assert r.status_code == 409
    r = await tenant.client.post(f"{T}/messages/{message_id}/retry", headers=ADMIN)
    assert r.status_code == 409
    await drain(tenant.ctx)
    assert (await tenant.message(message_id))["attempts"] == []


async def test_send_at_schedules(tenant: Tenant) -> None:
    later = await tenant.send_ok(send_at="2099-01-01T00:00:00Z")
    now = await tenant.send_ok()
    await drain(tenant.ctx)
    assert (await tenant.message(now))["status"] == "sent"
    assert (await tenant.message(later))["status"] == "queued"
    stats = (await tenant.client.get(f"{T}/messages/stats", headers=ADMIN)).json()
    assert stats == {
        "queued": 1,
        "sending": 0,
        "deferred": 0,
        "sent": 1,
        "failed": 0,
        "cancelled": 0,
    }


async def test_log_filters_and_pages(tenant: Tenant) -> None:
    for i in range(5):
        await tenant.send_ok(
            to=[f"user{i}@example.com"], subject=f"S{i}", stage="production" if i % 2 else "test"
        )
    c = tenant.client
    r = await c.get(f"{T}/messages", params={"recipient": "user3@example.com"}, headers=ADMIN)
    assert [m["subject"] for m in r.json()["items"]] == ["S3"]
    r = await c.get(f"{T}/messages", params={"stage": "production"}, headers=ADMIN)
    assert sorted(m["subject"] for m in r.json()["items"]) == ["S1", "S3"]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await c.get(f"{T}/messages", params=params, headers=ADMIN)).json()
        seen += [m["subject"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["S4", "S3", "S2", "S1", "S0"]
    r = await c.get(f"{T}/messages", params={"status": "bogus"}, headers=ADMIN)
    assert r.status_code == 422
