"""Test lists: every recipient and the envelope go to the list of the message's stage; the
decision survives retries; production mail goes to its real recipients."""

from __future__ import annotations

import email
from email import policy

from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, make_due
from tests.support.smtp_servers import RawConnection, RawSmtpServer


async def _activate(tenant: Tenant, active: bool) -> None:
    """The app-level list: mail naming no stage and every stage but production."""
    r = await tenant.client.put(
        f"{T}/apps/billing/test-list",
        json={"addresses": ["qa1@test.example", "qa2@test.example"], "active": active},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text


def _rcpts(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.upper().startswith(b"RCPT TO")]


async def test_to_cc_bcc_reach_only_the_test_list(tenant: Tenant) -> None:
    await _activate(tenant, True)
    async with RawSmtpServer.scripted() as raw:
        await tenant.server(raw.port, stages=["development"])
        message_id = await tenant.send_ok(
            app="billing",
            stage="development",
            to=["real.customer@example.com"],
            cc=["boss@example.com"],
            bcc=["secret@example.com"],
        )
        await drain(tenant.ctx)
    assert sorted(_rcpts(raw.received)) == [
        b"RCPT TO:<qa1@test.example>",
        b"RCPT TO:<qa2@test.example>",
    ]
    for real in (b"real.customer@example.com", b"boss@example.com", b"secret@example.com"):
        assert real not in b"".join(c.commands[0] for c in raw.connections if c.commands)
    [content] = raw.contents
    parsed = email.message_from_bytes(content[: -len(b".\r\n")], policy=policy.default)
    assert "qa1@test.example" in parsed["To"] and parsed["Cc"] is None
    original = parsed["X-Mailgate-Original-Recipients"]
    assert "real.customer@example.com" in original and "boss@example.com" in original
    assert "secret@example.com" not in original  # never Bcc
    message = await tenant.message(message_id)
    assert message["redirected"] is True
    assert message["original_recipients"] == {
        "to": ["real.customer@example.com"],
        "cc": ["boss@example.com"],
        "bcc": ["secret@example.com"],
    }
    assert [r["email"] for r in message["recipients"]] == ["qa1@test.example", "qa2@test.example"]


async def test_redirect_survives_a_retry_after_the_list_is_switched_off(tenant: Tenant) -> None:
    await _activate(tenant, True)

    async def first_defers(conn: RawConnection) -> None:
        await conn.serve({"DOT": b"451 4.3.0 try later\r\n"} if conn.index == 0 else None)

    async with RawSmtpServer(first_defers) as raw:
        await tenant.server(raw.port, stages=["development"])
        message_id = await tenant.send_ok(
            app="billing", stage="development", to=["real.customer@example.com"]
        )
        await drain(tenant.ctx)
        assert (await tenant.message(message_id))["status"] == "deferred"
        await _activate(tenant, False)
        await make_due(tenant.ctx)
        await drain(tenant.ctx)
        # A message sent now, with the list off, goes to its real recipient.
        fresh = await tenant.send_ok(
            app="billing", stage="development", to=["real.customer@example.com"]
        )
        await drain(tenant.ctx)
    assert (await tenant.message(message_id))["status"] == "sent"
    assert (await tenant.message(fresh))["redirected"] is False
    first, second, third = (_rcpts(bytes(c.received)) for c in raw.connections[:3])
    assert b"RCPT TO:<real.customer@example.com>" not in first + second
    assert b"RCPT TO:<qa1@test.example>" in second
    assert third == [b"RCPT TO:<real.customer@example.com>"]
    assert raw.contents[0] == raw.contents[1]  # the retry sent identical bytes
