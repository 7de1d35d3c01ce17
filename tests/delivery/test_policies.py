"""Tenant policies: sending quotas (tenant and app), retention per final status, erasure."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from mailgate.storage.base import utcnow
from mailgate.storage.tables import (
    attempts,
    audit_log,
    message_bodies,
    message_recipients,
    messages,
)
from mailgate.worker import maintenance
from tests.config.helpers import bearer
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain


async def _owner(tenant: Tenant) -> dict[str, str]:
    r = await tenant.client.post(
        f"{T}/tokens", json={"name": "owner", "role": "owner"}, headers=ADMIN
    )
    return bearer(r.json()["token"])


# Quotas ---------------------------------------------------------------------------------


async def test_tenant_quota_refuses_past_the_limit_with_retry_after(tenant: Tenant) -> None:
    r = await tenant.client.patch(f"{T}/policy", json={"quota": {"per_minute": 3}}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["quota"] == {"per_minute": 3, "per_day": None}
    for _ in range(2):
        await tenant.send_ok()
    # A batch of two does not fit in the one place left: refused whole, nothing accepted.
    batch = await tenant.client.post(
        f"{T}/messages/batch",
        json={"messages": [{"to": ["a@example.com"], "subject": "s", "text": "t"}] * 2},
        headers=tenant.sender,
    )
    assert batch.status_code == 429, batch.text
    assert 1 <= int(batch.headers["Retry-After"]) <= 60
    assert "per minute" in batch.json()["detail"]
    await tenant.send_ok()  # the third place
    refused = await tenant.send()
    assert refused.status_code == 429
    async with tenant.ctx.db.read() as tx:
        assert len((await tx.execute(select(messages.c.id))).all()) == 3


async def test_concurrent_sends_never_pass_the_quota(tenant: Tenant) -> None:
    await tenant.client.patch(f"{T}/policy", json={"quota": {"per_day": 5}}, headers=ADMIN)
    results = await asyncio.gather(*(tenant.send() for _ in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 5 + [429] * 7
    seconds = max(int(r.headers["Retry-After"]) for r in results if r.status_code == 429)
    assert 60 < seconds <= 86_400  # the day window


async def test_app_quota_applies_to_that_app_only(tenant: Tenant) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/quota", json={"per_minute": 1, "per_day": None}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    await tenant.send_ok(app="billing")
    refused = await tenant.send(app="billing")
    assert refused.status_code == 429
    assert "this app" in refused.json()["detail"]
    await tenant.send_ok()  # no app: only the tenant's (unset) quota applies
    policy = (await tenant.client.get(f"{T}/policy", headers=ADMIN)).json()
    assert policy["app_quotas"] == {"billing": {"per_minute": 1, "per_day": None}}


async def test_only_the_instance_admin_sets_a_tenant_quota(tenant: Tenant) -> None:
    owner = await _owner(tenant)
    r = await tenant.client.patch(f"{T}/policy", json={"quota": {"per_minute": 10}}, headers=owner)
    assert r.status_code == 403
    # The owner does set the retention.
    r = await tenant.client.patch(
        f"{T}/policy", json={"retention_days": {"failed": 90}}, headers=owner
    )
    assert r.status_code == 200, r.text
    assert r.json()["retention_days"]["failed"] == 90
    assert r.json()["retention_overrides"] == {"failed": 90}


async def test_bad_policy_values_are_422_naming_the_field(tenant: Tenant) -> None:
    cases = [
        ({"quota": {"per_minute": 0}}, "quota.per_minute"),
        ({"quota": {"per_day": "many"}}, "quota.per_day"),
        ({"retention_days": {"sent": -1}}, "retention_days.sent"),
        ({"retention_days": {"sent": 100000}}, "retention_days.sent"),
        ({"retention_days": {"delivered": 3}}, "retention_days.delivered"),
    ]
    for body, field in cases:
        r = await tenant.client.patch(f"{T}/policy", json=body, headers=ADMIN)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text, (body, r.text)


# Retention ------------------------------------------------------------------------------


async def _age(tenant: Tenant, message_id: str, days: float, status: str | None = None) -> None:
    values: dict[str, object] = {"finished_at": utcnow() - timedelta(days=days)}
    if status is not None:
        values["status"] = status
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(update(messages).where(messages.c.id == message_id).values(values))


async def _left(tenant: Tenant) -> set[str]:
    async with tenant.ctx.db.read() as tx:
        return {r[0] for r in await tx.execute(select(messages.c.id))}


async def test_retention_covers_every_final_status(tenant: Tenant) -> None:
    ids = [await tenant.send_ok() for _ in range(4)]
    await drain(tenant.ctx)
    sent, failed, cancelled, bounced = ids
    await _age(tenant, sent, 31)
    await _age(tenant, failed, 31, "failed")
    await _age(tenant, cancelled, 31, "cancelled")
    await _age(tenant, bounced, 31)
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(message_recipients)
            .where(message_recipients.c.message_id == bounced)
            .values(status="bounced")
        )
    purged = await maintenance.purge_once(tenant.ctx)
    assert purged.messages == 4
    assert await _left(tenant) == set()


async def test_a_tenant_keeps_each_status_as_long_as_it_says(tenant: Tenant) -> None:
    r = await tenant.client.patch(
        f"{T}/policy",
        json={"retention_days": {"failed": 90, "bounced": 60, "sent": 2}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    ids = [await tenant.send_ok() for _ in range(5)]
    await drain(tenant.ctx)
    old_failed, young_failed, bounced, sent_old, cancelled = ids
    await _age(tenant, old_failed, 91, "failed")
    await _age(tenant, young_failed, 31, "failed")  # past the instance's 30, within 90
    await _age(tenant, bounced, 31)
    await _age(tenant, sent_old, 3)  # past the tenant's 2 days
    await _age(tenant, cancelled, 29, "cancelled")  # instance default 30 applies
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(message_recipients)
            .where(message_recipients.c.message_id == bounced)
            .values(status="bounced")
        )
    await maintenance.purge_once(tenant.ctx)
    assert await _left(tenant) == {young_failed, bounced, cancelled}
    # Back to the instance setting: the young failed message (31 days) goes too.
    await tenant.client.patch(
        f"{T}/policy", json={"retention_days": {"failed": None}}, headers=ADMIN
    )
    await maintenance.purge_once(tenant.ctx)
    assert await _left(tenant) == {bounced, cancelled}


# Erasure --------------------------------------------------------------------------------


async def test_erasing_a_recipient_removes_their_address_and_content(tenant: Tenant) -> None:
    alice = "Alice.Private@example.com"
    shared = await tenant.send_ok(to=[alice, "bob@example.com"], subject="Your results")
    own = await tenant.send_ok(to=[alice], subject="Only for Alice", metadata={"case": "x"})
    other = await tenant.send_ok(to=["carol@example.com"], subject="Carol's")
    await drain(tenant.ctx)
    waiting = await tenant.send_ok(to=[alice], send_at="2099-01-01T00:00:00Z")

    r = await tenant.client.delete(f"{T}/recipients/{alice.upper()}", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["messages"] == 3 and body["deliveries_stopped"] == 1
    assert body["bodies_removed"] == 3  # both sent messages, and the cancelled waiting one

    async with tenant.ctx.db.read() as tx:
        emails = {r[0] for r in await tx.execute(select(message_recipients.c.email))}
        rows = {
            r.id: r
            for r in await tx.execute(
                select(messages.c.id, messages.c.subject, messages.c.status, messages.c.meta)
            )
        }
        bodies = {r[0] for r in await tx.execute(select(message_bodies.c.message_id))}
        transcripts = " ".join(
            (t or "") + (rep or "")
            for t, rep in await tx.execute(select(attempts.c.transcript, attempts.c.reply))
        )
        audit = (
            await tx.execute(
                select(audit_log.c.object_name, audit_log.c.changes).where(
                    audit_log.c.action == "recipient.erase"
                )
            )
        ).one()
    assert "alice.private@example.com" not in emails
    assert {"bob@example.com", "carol@example.com", "[erased]"} <= emails
    assert rows[shared].subject == "" and rows[own].subject == "" and rows[own].meta is None
    assert rows[other].subject == "Carol's"
    assert rows[waiting].status == "cancelled"
    assert bodies == {other}
    assert "alice.private" not in transcripts.lower()
    # The audit log proves the request was carried out without keeping the address.
    assert audit.object_name.startswith("sha256:")
    assert "alice" not in str(audit).lower()
    # The message log shows the erased recipient, and Bob's delivery stays in it.
    shown = await tenant.message(shared)
    assert {r["email"] for r in shown["recipients"]} == {"[erased]", "bob@example.com"}


async def test_erase_needs_the_tenant_owner_and_an_address(tenant: Tenant) -> None:
    r = await tenant.client.delete(f"{T}/recipients/x@example.com", headers=tenant.sender)
    assert r.status_code == 403
    r = await tenant.client.delete(f"{T}/recipients/not-an-address", headers=ADMIN)
    assert r.status_code == 422 and "address" in r.text
