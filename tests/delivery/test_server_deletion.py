"""Deleting a mail server shows what depends on it and moves each dependant explicitly."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from mailgate.storage.tables import messages
from tests.config.helpers import field_names
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain


async def _servers(tenant: Tenant) -> dict[str, dict[str, Any]]:
    r = await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)
    return {s["name"]: s for s in r.json()["items"]}


async def _stage_server(tenant: Tenant, stage: str) -> str | None:
    r = await tenant.client.get(f"{T}/stages", headers=ADMIN)
    body = r.json()
    items = body["items"] if isinstance(body, dict) else body
    found = next(s for s in items if s["name"] == stage)
    return found.get("mail_server_id")


async def test_a_server_with_dependants_is_not_deleted_without_a_reassignment(
    tenant: Tenant,
) -> None:
    relay = await tenant.server(2599, name="Relay")  # holds production, is the default
    queued = await tenant.send_ok(stage="production")
    preview = await tenant.client.get(f"{T}/mail-servers/{relay['id']}/dependants", headers=ADMIN)
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "server_id": relay["id"],
        "server_name": "Relay",
        "stages": ["production"],
        "accounts": [],
        "is_default": True,
        "fallback_of": [],
        "mail": 1,
    }
    r = await tenant.client.delete(f"{T}/mail-servers/{relay['id']}", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert sorted(field_names(r)) == ["default_to", "mail_to", "stages_to"]
    assert "production" in r.json()["detail"] and "tenant default" in r.json()["detail"]
    assert r.json()["dependants"]["stages"] == ["production"]
    # Nothing changed.
    assert "Relay" in await _servers(tenant)
    assert (await tenant.message(queued))["server_id"] == relay["id"]


async def test_a_target_that_is_not_another_server_is_a_422_naming_the_field(
    tenant: Tenant,
) -> None:
    relay = await tenant.server(2599, name="Relay")
    base = f"{T}/mail-servers/{relay['id']}"
    r = await tenant.client.delete(f"{base}?stages_to=nope&default_to={relay['id']}", headers=ADMIN)
    assert r.status_code == 422 and sorted(field_names(r)) == ["default_to", "stages_to"]
    r = await tenant.client.delete(f"{base}?stages_to=none&default_to=none", headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["default_to"]


async def test_stages_default_and_queued_mail_move_to_the_named_server(tenant: Tenant) -> None:
    relay = await tenant.server(2599, name="Relay")
    queued = await tenant.send_ok(stage="production")
    capture = (await _servers(tenant))["Capture"]["id"]
    r = await tenant.client.delete(
        f"{T}/mail-servers/{relay['id']}?stages_to={capture}&default_to={capture}"
        f"&mail_to={capture}",
        headers=ADMIN,
    )
    assert r.status_code == 204, r.text
    servers = await _servers(tenant)
    assert set(servers) == {"Capture"} and servers["Capture"]["is_default"] is True
    assert servers["Capture"]["stages"] == ["production"]
    assert (await tenant.message(queued))["server_id"] == capture
    await drain(tenant.ctx)
    assert (await tenant.message(queued))["status"] == "sent"
    # The stage's new server sends new mail; nothing is refused.
    fresh = await tenant.message(await tenant.send_ok(stage="production"))
    assert fresh["server_id"] == capture


async def test_reroute_sends_waiting_mail_by_the_routing_after_the_delete(tenant: Tenant) -> None:
    relay = await tenant.server(2599, name="Relay")
    queued = await tenant.send_ok(stage="production")
    capture = (await _servers(tenant))["Capture"]["id"]
    r = await tenant.client.delete(
        f"{T}/mail-servers/{relay['id']}?stages_to=none&default_to={capture}&mail_to=reroute",
        headers=ADMIN,
    )
    assert r.status_code == 204, r.text
    assert await _stage_server(tenant, "production") is None
    # The stage lost its server: the account's server (Capture) takes the mail.
    assert (await tenant.message(queued))["server_id"] == capture
    await drain(tenant.ctx)
    assert (await tenant.message(queued))["status"] == "sent"


async def test_accounts_whose_server_is_deleted_cannot_send(tenant: Tenant) -> None:
    relay = await tenant.server(2599, name="Relay")  # default server, holds production
    capture = (await _servers(tenant))["Capture"]["id"]
    r = await tenant.client.delete(f"{T}/mail-servers/{capture}", headers=ADMIN)
    assert r.status_code == 409 and field_names(r) == ["accounts_to"]
    assert "noreply@acme.example" in r.json()["detail"]
    r = await tenant.client.delete(f"{T}/mail-servers/{capture}?accounts_to=none", headers=ADMIN)
    assert r.status_code == 204, r.text
    # Neither the tenant default nor the stage's server sends for the account.
    for stage in (None, "production"):
        r = await tenant.send(**({"stage": stage} if stage else {}))
        assert r.status_code == 422, r.text
        assert field_names(r) == ["from"]
        assert "noreply@acme.example has no mail server" in r.json()["detail"]
    # Linking a server gives it back its outbound capability.
    accounts = (await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"]
    r = await tenant.client.patch(
        f"{T}/email-accounts/{accounts[0]['id']}",
        json={"mail_server_id": relay["id"]},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    await tenant.send_ok()


async def test_retry_routes_mail_of_a_deleted_server_to_the_server_now_in_place(
    tenant: Tenant,
) -> None:
    message = await tenant.send_ok(stage="production")
    # Mail that lost its server (as a delete before reassignment existed left it): it failed.
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(messages)
            .where(messages.c.id == message)
            .values(server_id=None, status="failed", next_attempt_at=None)
        )
    fresh = await tenant.client.post(
        f"{T}/mail-servers",
        json={"name": "New", "engine": "capture", "stages": ["production"]},
        headers=ADMIN,
    )
    assert fresh.status_code == 201, fresh.text
    r = await tenant.client.post(f"{T}/messages/{message}/retry", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (await tenant.message(message))["server_id"] == fresh.json()["id"]
    await drain(tenant.ctx)
    assert (await tenant.message(message))["status"] == "sent"


async def test_retry_without_any_route_says_what_to_fix(tenant: Tenant) -> None:
    message = await tenant.send_ok(stage="production")
    capture = (await _servers(tenant))["Capture"]["id"]
    r = await tenant.client.delete(
        f"{T}/mail-servers/{capture}?accounts_to=none&mail_to=reroute", headers=ADMIN
    )
    assert r.status_code == 204, r.text
    await drain(tenant.ctx)
    # The worker routes it again on each attempt and, finding no route, defers it saying why.
    waiting = await tenant.message(message)
    assert waiting["status"] == "deferred", waiting
    assert "noreply@acme.example has no mail server" in waiting["last_error"]
    r = await tenant.client.post(f"{T}/messages/{message}/retry", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert "noreply@acme.example" in r.json()["detail"]
    assert "link a mail server to the account" in r.json()["detail"]


async def test_an_attempt_in_flight_when_its_server_is_deleted_is_still_recorded(
    tenant: Tenant,
) -> None:
    from datetime import timedelta

    from mailgate.domain.delivery import MessageStatus, RecipientStatus
    from mailgate.storage.queue import Completion, RecipientUpdate, queue_for

    relay = await tenant.server(2599, name="Relay", is_default=False)
    message = await tenant.send_ok(stage="production")
    queue = queue_for(tenant.ctx.db.dialect)
    async with tenant.ctx.db.transaction() as tx:
        rows = await queue.claim(tx, worker="w-1", limit=10, lease=timedelta(seconds=60))
    async with tenant.ctx.db.read() as tx:
        (job,) = await queue.load(tx, rows)
    assert job.server_id == relay["id"]
    # Deleted while the attempt is on the wire: the message moves to Capture.
    capture = (await _servers(tenant))["Capture"]["id"]
    r = await tenant.client.delete(
        f"{T}/mail-servers/{relay['id']}?stages_to=none&mail_to={capture}", headers=ADMIN
    )
    assert r.status_code == 204, r.text
    done = Completion(
        job=job,
        status=MessageStatus.SENT,
        next_attempt_at=None,
        possible_duplicate=False,
        held=False,
        last_error=None,
        attempt=None,
        recipients=tuple(
            RecipientUpdate(p, RecipientStatus.SENT, 250, "250 ok") for p, _ in job.recipients
        ),
    )
    async with tenant.ctx.db.transaction() as tx:
        await queue.finish(tx, queue.prepare_finish([done], worker="w-1"))
    sent = await tenant.message(message)
    assert sent["status"] == "sent"
    assert sent["server_id"] == capture  # the deleted server is not written back
