"""Waiting mail whose server was deleted is routed again by the worker on its next attempt."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from mailgate.storage.tables import mail_servers, messages
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, make_due
from tests.support.smtp_servers import AiosmtpdServer, free_port


async def _server_id(tenant: Tenant, name: str) -> str:
    r = await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)
    return str(next(s["id"] for s in r.json()["items"] if s["name"] == name))


async def _drop_server_row(tenant: Tenant, server_id: str) -> None:
    """Delete a server the way a delete without reassignment left things (before 0.9, or
    by hand in the database): the foreign keys set the mail's, stages' and accounts'
    server to NULL."""
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(delete(mail_servers).where(mail_servers.c.id == server_id))


async def _row(tenant: Tenant, message_id: str) -> Any:
    async with tenant.ctx.db.read() as tx:
        return (await tx.execute(select(messages).where(messages.c.id == message_id))).one()


async def test_deferred_mail_of_a_deleted_server_goes_out_through_the_stage_server_now(
    tenant: Tenant,
) -> None:
    # The old server does not answer: the message is deferred for it.
    old = await tenant.server(free_port(), name="Old", is_default=False)
    message = await tenant.send_ok(stage="production")
    await drain(tenant.ctx)
    assert (await tenant.message(message))["status"] == "deferred"
    async with AiosmtpdServer() as smtp:
        await _drop_server_row(tenant, old["id"])
        assert (await _row(tenant, message)).server_id is None
        fresh = await tenant.server(smtp.port, name="New", is_default=False)  # takes production
        await make_due(tenant.ctx)
        await drain(tenant.ctx)
        assert len(smtp.messages) == 1
        assert smtp.messages[0].rcpt_tos == ("rcpt@example.com",)
    sent = await tenant.message(message)
    assert sent["status"] == "sent", sent
    assert sent["server_id"] == fresh["id"]
    notes = [a for a in sent["attempts"] if a["outcome"] == "rerouted"]
    assert len(notes) == 1, sent["attempts"]
    assert notes[0]["engine"] == "queue" and notes[0]["server_id"] == fresh["id"]
    assert "mail server was deleted" in notes[0]["reply"]
    assert "'New'" in notes[0]["reply"] and "stage 'production'" in notes[0]["reply"]
    assert [a["outcome"] for a in sent["attempts"]][-1] == "sent"


async def test_queued_mail_without_a_stage_server_goes_through_the_account_server(
    tenant: Tenant,
) -> None:
    old = await tenant.server(free_port(), name="Old", is_default=False)
    message = await tenant.send_ok(stage="production", send_at="2099-01-01T00:00:00Z")
    assert (await tenant.message(message))["server_id"] == old["id"]
    await _drop_server_row(tenant, old["id"])  # production has no server any more
    await make_due(tenant.ctx)
    await drain(tenant.ctx)
    sent = await tenant.message(message)
    capture = await _server_id(tenant, "Capture")
    assert sent["status"] == "sent" and sent["server_id"] == capture, sent
    (note,) = [a for a in sent["attempts"] if a["outcome"] == "rerouted"]
    assert "email account noreply@acme.example" in note["reply"]


async def test_without_a_route_the_mail_is_deferred_with_what_to_fix_then_recovered(
    tenant: Tenant,
) -> None:
    old = await tenant.server(free_port(), name="Old", is_default=False)
    message = await tenant.send_ok(stage="production")
    await _drop_server_row(tenant, old["id"])
    # The account's own server is gone too: it cannot send (as at acceptance).
    await _drop_server_row(tenant, await _server_id(tenant, "Capture"))
    await drain(tenant.ctx)
    waiting = await tenant.message(message)
    assert waiting["status"] == "deferred", waiting
    assert "noreply@acme.example has no mail server" in waiting["last_error"]
    assert "link a mail server" in waiting["last_error"]
    assert waiting["next_attempt_at"] is not None and waiting["server_id"] is None
    (note,) = [a for a in waiting["attempts"] if a["engine"] == "queue"]
    assert note["outcome"] == "deferred" and note["reply"] == waiting["last_error"]
    assert [r["status"] for r in waiting["recipients"]] == ["deferred"]
    # Nothing was lost: once the account has a server again, the next attempt sends it.
    async with AiosmtpdServer() as smtp:
        fresh = await tenant.server(smtp.port, name="New", is_default=True, stages=[])
        accounts = (await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)).json()
        r = await tenant.client.patch(
            f"{T}/email-accounts/{accounts['items'][0]['id']}",
            json={"mail_server_id": fresh["id"]},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        await make_due(tenant.ctx)
        await drain(tenant.ctx)
        assert len(smtp.messages) == 1
    sent = await tenant.message(message)
    assert sent["status"] == "sent" and sent["server_id"] == fresh["id"]
    # New mail from that account is still refused while it had no server; now accepted.
    await tenant.send_ok()


async def test_mail_of_a_deleted_account_uses_the_tenant_default(tenant: Tenant) -> None:
    async with AiosmtpdServer() as smtp:
        default = await tenant.server(smtp.port, name="Default", stages=[], is_default=True)
        old = await tenant.server(free_port(), name="Old", is_default=False)
        message = await tenant.send_ok(stage="production", send_at="2099-01-01T00:00:00Z")
        accounts = (await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)).json()
        r = await tenant.client.delete(
            f"{T}/email-accounts/{accounts['items'][0]['id']}", headers=ADMIN
        )
        assert r.status_code == 204, r.text
        await _drop_server_row(tenant, old["id"])
        await make_due(tenant.ctx)
        await drain(tenant.ctx)
        assert len(smtp.messages) == 1
    sent = await tenant.message(message)
    assert sent["status"] == "sent" and sent["server_id"] == default["id"], sent
    (note,) = [a for a in sent["attempts"] if a["outcome"] == "rerouted"]
    assert "tenant's default server" in note["reply"]
