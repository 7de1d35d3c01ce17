"""SendGrid Event Webhook: signed posts from a loopback sender to Mailgate served over real
HTTP; events become statuses, webhooks and suppressions, once each."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from mailgate.storage.tables import tenants, webhook_deliveries
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.support.http_fakes import HttpResponse, HttpServer
from tests.suppressions.sendgrid_sender import EventSigner, body_of, serve_http

EVENTS = ["message.delivered", "message.deferred", "message.bounced", "message.complained"]


async def _sendgrid_server(tenant: Tenant, api: HttpServer) -> str:
    r = await tenant.client.post(
        f"{T}/mail-servers",
        json={
            "name": "SendGrid",
            "engine": "sendgrid",
            "api_key": "SG.test-key",
            "api_base_url": api.url(),
            "stages": ["production"],
            "is_default": True,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _deliveries(tenant: Tenant) -> list[tuple[str, dict[str, Any]]]:
    async with tenant.ctx.db.read() as tx:
        rows = await tx.execute(
            select(webhook_deliveries.c.event, webhook_deliveries.c.payload).order_by(
                webhook_deliveries.c.id
            )
        )
        return [(event, dict(payload)) for event, payload in rows]


def _event(kind: str, email: str, n: int, message_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "event": kind,
        "sg_event_id": f"ev-{n}",
        "sg_message_id": "sgX-Msg1.filterdrecv-1-2.0",
        "smtp-id": message_id,
        "timestamp": int(time.time()),
        **extra,
    }


@pytest.fixture
async def sent(tenant: Tenant) -> dict[str, Any]:
    """A message sent through a SendGrid server (a loopback fake of its Mail Send API)."""
    async with HttpServer.answering(HttpResponse(202, headers={"X-Message-Id": "sgX-Msg1"})) as api:
        server_id = await _sendgrid_server(tenant, api)
        r = await tenant.send(
            stage="production", to=["ok@example.net", "gone@example.net", "spam@example.net"]
        )
        assert r.status_code == 202, r.text
        await drain(tenant.ctx)
    message = await tenant.message(r.json()["id"])
    assert message["status"] == "sent" and message["remote_id"] == "sgX-Msg1"
    return {"server_id": server_id, **r.json()}


async def _listen(tenant: Tenant, sent: dict[str, Any]) -> tuple[EventSigner, str]:
    """Sets a new signer's key on the server that sent ``sent``; the signer and the path its
    events are posted to."""
    signer = EventSigner()
    key_url = f"{T}/mail-servers/{sent['server_id']}/sendgrid-events/key"
    r = await tenant.client.put(
        key_url, json={"public_key": signer.verification_key}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    return signer, str(r.json()["path"])


async def test_signed_events_change_statuses_emit_webhooks_and_suppress_once(
    tenant: Tenant, sent: dict[str, Any]
) -> None:
    signer, path = await _listen(tenant, sent)
    assert path == f"{T}/mail-servers/{sent['server_id']}/sendgrid-events"
    r = await tenant.client.post(
        f"{T}/webhooks", json={"url": "https://127.0.0.1:9/hook", "events": EVENTS}, headers=ADMIN
    )
    assert r.status_code == 201, r.text

    mid = sent["message_id"]
    events = [
        _event("processed", "ok@example.net", 1, mid),
        _event("deferred", "ok@example.net", 2, mid, response="421 try later", attempt="1"),
        _event("delivered", "ok@example.net", 3, mid, response="250 OK"),
        _event(
            "bounce", "gone@example.net", 4, mid, type="bounce", status="5.1.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist",
        ),
        _event("delivered", "spam@example.net", 5, mid),
        _event("spamreport", "spam@example.net", 6, mid),
        _event("bounce", "nobody@example.net", 7, "<unknown@elsewhere>", sg_message_id="zz.f"),
    ]  # fmt: skip
    body = body_of(events)
    async with serve_http(tenant.ctx) as http:
        r = await http.post(path, content=body, headers=signer.headers(body))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "received": 7,
            "applied": 5,
            "duplicates": 0,
            "unmatched": 1,
            "ignored": 1,
        }
        before = await _deliveries(tenant)

        # SendGrid retries the same events (a new signature and timestamp): nothing changes.
        again = await http.post(path, content=body, headers=signer.headers(body))
        assert again.status_code == 200, again.text
        assert again.json()["duplicates"] == 7 and again.json()["applied"] == 0
        assert await _deliveries(tenant) == before

    message = await tenant.message(sent["id"])
    by_email = {x["email"]: x for x in message["recipients"]}
    assert by_email["ok@example.net"]["status"] == "delivered"
    assert by_email["gone@example.net"]["status"] == "bounced"
    assert by_email["gone@example.net"]["code"] == 550
    assert by_email["spam@example.net"]["status"] == "complained"
    engines = [(a["engine"], a["outcome"]) for a in message["attempts"]]
    assert ("sendgrid", "bounced") in engines and ("sendgrid", "deferred") in engines

    kinds = [event for event, _ in before]
    assert sorted(kinds) == sorted(
        ["message.deferred", "message.delivered", "message.bounced", "message.delivered",
         "message.complained"]
    )  # fmt: skip
    bounced = next(p for e, p in before if e == "message.bounced")
    assert bounced["recipient"] == "gone@example.net"
    assert bounced["provider_event"]["event_id"] == "ev-4"
    assert bounced["provider_event"]["suppression"]["reason"] == "hard_bounce"

    r = await tenant.client.get(f"{T}/suppressions", headers=ADMIN)
    entries = {e["email"]: e for e in r.json()["items"]}
    assert set(entries) == {"gone@example.net", "spam@example.net"}
    assert (entries["gone@example.net"]["reason"], entries["gone@example.net"]["source"]) == (
        "hard_bounce",
        "sendgrid",
    )
    assert entries["spam@example.net"]["reason"] == "complaint"
    assert entries["gone@example.net"]["source_message_id"] == sent["id"]

    # The next send to the bounced address says so.
    r = await tenant.send(stage="production", to=["gone@example.net"])
    assert r.status_code == 422
    assert entries["gone@example.net"]["id"] in r.json()["errors"][0]["message"]


async def test_unsigned_forged_stale_and_unconfigured_posts_are_refused(
    tenant: Tenant, sent: dict[str, Any]
) -> None:
    signer, forger = EventSigner(), EventSigner()
    base = f"{T}/mail-servers/{sent['server_id']}/sendgrid-events"
    body = body_of([_event("bounce", "gone@example.net", 1, sent["message_id"], type="bounce")])
    async with serve_http(tenant.ctx) as http:
        # No key set yet: nothing to verify with.
        r = await http.post(base, content=body, headers=signer.headers(body))
        assert r.status_code == 404
        r = await tenant.client.put(
            f"{base}/key", json={"public_key": signer.verification_key}, headers=ADMIN
        )
        assert r.status_code == 200, r.text

        r = await http.post(base, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401, r.text
        r = await http.post(base, content=body, headers=forger.headers(body))
        assert r.status_code == 403, r.text
        r = await http.post(
            base, content=body, headers=signer.headers(body, timestamp=int(time.time()) - 3600)
        )
        assert r.status_code == 403 and "clock" in r.json()["detail"]
        tampered = body.replace(b"gone@", b"good@")
        r = await http.post(base, content=tampered, headers=signer.headers(body))
        assert r.status_code == 403
        headers = signer.headers(body)
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!"
        assert (await http.post(base, content=body, headers=headers)).status_code == 403
        r = await http.post(
            f"{T}/mail-servers/nope/sendgrid-events", content=body, headers=signer.headers(body)
        )
        assert r.status_code == 404
        r = await http.post(
            f"/api/v1/tenants/rival/mail-servers/{sent['server_id']}/sendgrid-events",
            content=body,
            headers=signer.headers(body),
        )
        assert r.status_code == 404
        garbage = b'{"not": "a list"}'
        r = await http.post(base, content=garbage, headers=signer.headers(garbage))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"

    message = await tenant.message(sent["id"])
    assert {x["status"] for x in message["recipients"]} == {"sent"}
    async with tenant.ctx.db.read() as tx:
        assert (
            await tx.execute(select(func.count()).select_from(webhook_deliveries))
        ).scalar() == 0


async def test_the_key_is_validated_and_only_for_sendgrid_servers(
    tenant: Tenant, sent: dict[str, Any]
) -> None:
    url = f"{T}/mail-servers/{sent['server_id']}/sendgrid-events/key"
    rsa_der = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    for key in (
        "not base64 at all",
        "QUJD",
        _b64(rsa_der),
        _b64(p384),
    ):
        r = await tenant.client.put(url, json={"public_key": key}, headers=ADMIN)
        assert r.status_code == 422, (key, r.text)
        assert r.json()["errors"][0]["field"] == "public_key"
    pem = EventSigner()
    pem_text = serialization.load_der_public_key(
        base64.b64decode(pem.verification_key)
    ).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    r = await tenant.client.put(url, json={"public_key": pem_text.decode()}, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await tenant.client.get(url, headers=ADMIN)
    assert r.json()["public_key"].startswith("-----BEGIN PUBLIC KEY-----")

    servers = await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)
    capture = next(s for s in servers.json()["items"] if s["engine"] == "capture")
    r = await tenant.client.put(
        f"{T}/mail-servers/{capture['id']}/sendgrid-events/key",
        json={"public_key": EventSigner().verification_key},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "engine"
    r = await tenant.client.put(
        url, json={"public_key": EventSigner().verification_key}, headers=tenant.sender
    )
    assert r.status_code == 403
    assert (await tenant.client.delete(url, headers=ADMIN)).status_code == 204
    assert (await tenant.client.delete(url, headers=ADMIN)).status_code == 404


def _b64(key: Any) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


async def test_bounce_events_are_counted_once_by_tenant_and_server(
    tenant: Tenant, sent: dict[str, Any]
) -> None:
    from tests.delivery.test_ops_metrics import _samples, _value

    signer, path = await _listen(tenant, sent)
    async with tenant.ctx.db.read() as tx:
        tenant_id = (await tx.execute(select(tenants.c.id))).scalar_one()
    labels = {"tenant": tenant_id, "server": sent["server_id"]}

    async def bounced() -> float:
        text = (await tenant.client.get("/metrics")).text
        return _value(_samples(text), "mailgate_messages_bounced_total", **labels) or 0.0

    before = await bounced()
    mid = sent["message_id"]
    body = body_of(
        [
            _event("bounce", "gone@example.net", 1, mid, type="bounce", reason="550 no such user"),
            _event("bounce", "ok@example.net", 2, mid, type="blocked", reason="554 blocked"),
            _event("delivered", "spam@example.net", 3, mid),
        ]
    )
    async with serve_http(tenant.ctx) as http:
        r = await http.post(path, content=body, headers=signer.headers(body))
        assert r.status_code == 200, r.text
        assert await bounced() == before + 2
        again = await http.post(path, content=body, headers=signer.headers(body))
        assert again.json()["duplicates"] == 3
    assert await bounced() == before + 2
