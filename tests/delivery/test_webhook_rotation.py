"""Editing webhooks and rotating their secret, verified by a real receiver on loopback.

Signatures are recomputed here from the raw bytes the receiver got, independently of
Mailgate's own signing code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from mailgate.storage import webhooks as webhook_store
from mailgate.storage.base import utcnow
from mailgate.worker import maintenance
from mailgate.worker.webhooks import Dispatcher
from tests.config.helpers import new_tenant, token_for
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain
from tests.delivery.test_webhooks import SECRET, Clock, Received, Receiver

PREVIOUS = "x-mailgate-signature-previous"


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(SECRET)


def _signed_by(secret: str, received: Received, header: str = "x-mailgate-signature") -> bool:
    stamp = received.headers["x-mailgate-timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + received.body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), received.headers.get(header, ""))


async def _hook(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    payload = {"url": url, "events": ["message.sent"], "secret": SECRET, **body}
    r = await client.post(f"{T}/webhooks", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _rotate(client: httpx.AsyncClient, hook_id: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"{T}/webhooks/{hook_id}/rotate-secret", json=body or None, headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _patch(client: httpx.AsyncClient, hook_id: str, **body: Any) -> httpx.Response:
    return await client.patch(f"{T}/webhooks/{hook_id}", json=body, headers=ADMIN)


async def _deliver_one(tenant: Tenant, dispatcher: Dispatcher) -> None:
    await tenant.send_ok()
    await drain(tenant.ctx)
    assert await dispatcher.run_once() == 1


async def _audit(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get(f"{T}/audit", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# Rotation ----------------------------------------------------------------------------------


async def test_rotation_with_overlap_signs_with_both_secrets_until_it_ends(
    tenant: Tenant, receiver: Receiver
) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        before = utcnow()
        rotated = await _rotate(tenant.client, hook["id"], overlap_hours=1)
        new = rotated["secret"]
        assert new.startswith("whsec_") and new != SECRET
        until = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert before + timedelta(minutes=59) < until <= utcnow() + timedelta(hours=1)

        clock = Clock()
        async with Dispatcher(tenant.ctx, clock=clock) as dispatcher:
            await _deliver_one(tenant, dispatcher)
            clock.advance(hours=1, minutes=1)  # the overlap has ended
            await _deliver_one(tenant, dispatcher)

    during, after = receiver.received
    assert _signed_by(new, during) and not _signed_by(SECRET, during)
    assert _signed_by(SECRET, during, PREVIOUS) and not _signed_by(new, during, PREVIOUS)
    assert _signed_by(new, after) and PREVIOUS not in after.headers

    # The secret is shown once: reads show neither secret.
    for r in (
        await tenant.client.get(f"{T}/webhooks/{hook['id']}", headers=ADMIN),
        await tenant.client.get(f"{T}/webhooks", headers=ADMIN),
    ):
        assert r.status_code == 200 and new not in r.text and SECRET not in r.text
        assert '"secret":' not in r.text
    [entry] = [e for e in await _audit(tenant.client) if e["action"] == "webhook.rotate_secret"]
    assert entry["object"]["id"] == hook["id"] and "secret" in entry["changes"]
    assert new not in json.dumps(entry) and SECRET not in json.dumps(entry)


async def test_rotation_without_overlap_drops_the_previous_secret_at_once(
    tenant: Tenant, receiver: Receiver
) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        rotated = await _rotate(tenant.client, hook["id"])
        assert rotated["previous_secret_expires_at"] is None
        async with Dispatcher(tenant.ctx) as dispatcher:
            await _deliver_one(tenant, dispatcher)
    [got] = receiver.received
    assert _signed_by(rotated["secret"], got) and not _signed_by(SECRET, got)
    assert PREVIOUS not in got.headers


async def test_a_second_rotation_keeps_only_the_secret_it_replaces(
    tenant: Tenant, receiver: Receiver
) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        first = (await _rotate(tenant.client, hook["id"], overlap_hours=2))["secret"]
        second = (await _rotate(tenant.client, hook["id"], overlap_hours=0.5))["secret"]
        async with Dispatcher(tenant.ctx) as dispatcher:
            await _deliver_one(tenant, dispatcher)
    [got] = receiver.received
    assert _signed_by(second, got) and _signed_by(first, got, PREVIOUS)
    assert not _signed_by(SECRET, got, PREVIOUS)


async def test_housekeeping_forgets_a_previous_secret_whose_overlap_ended(
    tenant: Tenant, receiver: Receiver
) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        new = (await _rotate(tenant.client, hook["id"], overlap_hours=1))["secret"]
        assert (await maintenance.purge_once(tenant.ctx)).webhook_secrets == 0
        later = utcnow() + timedelta(hours=2)
        async with tenant.ctx.db.transaction() as tx:
            assert await webhook_store.forget_expired_previous(tx, tenant.ctx.box, now=later) == 1
        r = await tenant.client.get(f"{T}/webhooks/{hook['id']}", headers=ADMIN)
        assert r.json()["previous_secret_expires_at"] is None
        # Even on a clock still inside the old overlap, only the new secret signs now.
        async with Dispatcher(tenant.ctx) as dispatcher:
            await _deliver_one(tenant, dispatcher)
    [got] = receiver.received
    assert _signed_by(new, got) and PREVIOUS not in got.headers


# Editing -------------------------------------------------------------------------------------


async def test_patch_changes_url_and_events_checking_the_url_like_create(
    tenant: Tenant, receiver: Receiver
) -> None:
    second = Receiver(SECRET)
    async with receiver.running(), second.running():
        hook = await _hook(tenant.client, receiver.url)
        for url in ("https://169.254.169.254/latest", "ftp://example.com/x", "https://u:p@x.test/"):
            r = await _patch(tenant.client, hook["id"], url=url)
            assert r.status_code == 422, (url, r.text)
            assert r.json()["errors"][0]["field"] == "url"
        r = await _patch(tenant.client, hook["id"], url=second.url, events=["message.failed"])
        assert r.status_code == 200, r.text
        assert r.json()["url"] == second.url and r.json()["events"] == ["message.failed"]
        assert SECRET not in r.text
        # Not subscribed to message.sent any more: nothing is recorded for a sent message.
        await tenant.send_ok()
        await drain(tenant.ctx)
        r = await _patch(tenant.client, hook["id"], events=["message.sent", "message.sent"])
        assert r.json()["events"] == ["message.sent"]
        async with Dispatcher(tenant.ctx) as dispatcher:
            await _deliver_one(tenant, dispatcher)
    assert receiver.received == []
    [got] = second.received
    assert got.signature_ok and got.json["type"] == "message.sent"
    updates = [e for e in await _audit(tenant.client) if e["action"] == "webhook.update"]
    assert [sorted(e["changes"]) for e in updates] == [["events"], ["events", "url"]]
    assert all("?k=1" not in json.dumps(e) for e in updates)  # the query string stays out


async def test_patch_active_disables_and_enables(tenant: Tenant, receiver: Receiver) -> None:
    async with receiver.running():
        hook = await _hook(tenant.client, receiver.url)
        await tenant.send_ok()
        await drain(tenant.ctx)  # one delivery is pending
        r = await _patch(tenant.client, hook["id"], active=False)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "disabled" and "disabled by" in r.json()["disabled_reason"]
        deliveries = await tenant.client.get(f"{T}/webhooks/{hook['id']}/deliveries", headers=ADMIN)
        assert [d["status"] for d in deliveries.json()["items"]] == ["failed"]
        await tenant.send_ok()
        await drain(tenant.ctx)
        async with Dispatcher(tenant.ctx) as dispatcher:
            assert await dispatcher.run_once() == 0
            r = await _patch(tenant.client, hook["id"], active=True)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "active" and r.json()["disabled_reason"] is None
            await _deliver_one(tenant, dispatcher)
    assert len(receiver.received) == 1 and receiver.received[0].signature_ok


async def test_patch_refuses_nulls_unknown_fields_and_empty_events(tenant: Tenant) -> None:
    hook = await _hook(tenant.client, "https://93.184.216.34/hook")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": None}, "url"),
        ({"events": None}, "events"),
        ({"active": None}, "active"),
        ({"events": []}, "events"),
        ({"events": ["message.opened"]}, "events"),
        ({"secret": "another-secret-of-16+"}, "secret"),
    ]
    for body, field in cases:
        r = await _patch(tenant.client, hook["id"], **body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["errors"][0]["field"], (body, r.text)
    r = await tenant.client.get(f"{T}/webhooks/{hook['id']}", headers=ADMIN)
    assert r.json()["events"] == ["message.sent"] and r.json()["url"] == hook["url"]
    r = await tenant.client.post(
        f"{T}/webhooks/{hook['id']}/rotate-secret", json={"overlap_hours": 169}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("overlap_hours")


async def test_other_tenants_get_404_and_only_managers_may_edit(tenant: Tenant) -> None:
    hook = await _hook(tenant.client, "https://93.184.216.34/hook")
    await new_tenant(tenant.client, "rival")
    rival = await token_for(tenant.client, "rival", "owner")
    for base in (T, "/api/v1/tenants/rival"):
        url = f"{base}/webhooks/{hook['id']}"
        r = await tenant.client.patch(url, json={"active": False}, headers=rival)
        assert r.status_code == 404, r.text
        r = await tenant.client.post(f"{url}/rotate-secret", headers=rival)
        assert r.status_code == 404, r.text
    developer = await token_for(tenant.client, "acme", "developer")
    url = f"{T}/webhooks/{hook['id']}"
    assert (await tenant.client.patch(url, json={}, headers=developer)).status_code == 403
    assert (await tenant.client.post(f"{url}/rotate-secret", headers=developer)).status_code == 403
    r = await tenant.client.get(url, headers=ADMIN)
    assert r.json()["status"] == "active" and r.json()["previous_secret_expires_at"] is None
