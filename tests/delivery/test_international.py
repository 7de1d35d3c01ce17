"""Internationalised addresses end to end: SMTPUTF8 when needed, A-labels otherwise."""

from __future__ import annotations

from tests.delivery.conftest import Tenant, drain
from tests.support.smtp_servers import DEFAULT_EHLO, RawSmtpServer

NO_SMTPUTF8 = DEFAULT_EHLO.replace(b"250-SMTPUTF8\r\n", b"")


async def test_idn_domain_goes_out_as_a_label_without_smtputf8(tenant: Tenant) -> None:
    async with RawSmtpServer.scripted({"EHLO": NO_SMTPUTF8}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production", to=["user@bücher.example"])
        await drain(tenant.ctx)
    assert (await tenant.message(message_id))["status"] == "sent"
    assert b"RCPT TO:<user@xn--bcher-kva.example>" in raw.received
    assert b"SMTPUTF8" not in b"".join(c.commands[1] for c in raw.connections)
    assert all(byte < 0x80 for byte in raw.received)


async def test_non_ascii_local_part_uses_smtputf8(tenant: Tenant) -> None:
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production", to=["josé@example.com"])
        await drain(tenant.ctx)
    assert (await tenant.message(message_id))["status"] == "sent"
    mail_from = next(c for c in raw.connections[0].commands if c.startswith(b"MAIL FROM"))
    assert b"SMTPUTF8" in mail_from
    assert "RCPT TO:<josé@example.com>".encode() in raw.received


async def test_non_ascii_local_part_fails_clearly_without_smtputf8(tenant: Tenant) -> None:
    async with RawSmtpServer.scripted({"EHLO": NO_SMTPUTF8}) as raw:
        await tenant.server(raw.port)
        message_id = await tenant.send_ok(stage="production", to=["josé@example.com"])
        await drain(tenant.ctx)
    message = await tenant.message(message_id)
    assert message["status"] == "failed"
    assert "SMTPUTF8" in message["recipients"][0]["reply"]
    assert raw.contents == []
