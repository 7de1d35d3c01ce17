"""SMTP submission: a suppressed RCPT TO is answered ``550 5.7.1`` naming the entry; test
addresses that are all suppressed make DATA answer ``550 5.7.1``."""

from __future__ import annotations

import aiosmtplib
import pytest

from mailgate.submission import SubmissionServer
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant
from tests.submission.conftest import client as smtp_client
from tests.submission.conftest import message, new_token, plain, queued_id, serve, token_of
from tests.suppressions.conftest import suppress

__all__ = ["plain", "serve"]


async def test_a_suppressed_rcpt_gets_550_5_7_1_and_the_others_are_queued(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    entry = await suppress(tenant, "gone@example.net", reason="hard_bounce")
    async with smtp_client(plain.port) as smtp:
        await smtp.login("acme", token_of(tenant))
        await smtp.mail("noreply@acme.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await smtp.rcpt("Gone@example.net")
        assert refused.value.code == 550
        assert refused.value.message.startswith("5.7.1 Gone@example.net is suppressed: hard_bounce")
        assert entry["id"] in refused.value.message
        code, _ = await smtp.rcpt("ok@example.net")
        assert code == 250
        code, reply = await smtp.data(message(to="ok@example.net, gone@example.net"))
    assert code == 250
    stored = await tenant.message(queued_id(reply))
    assert [r["email"] for r in stored["recipients"]] == ["ok@example.net"]


async def test_an_app_entry_refuses_only_that_apps_token(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    await suppress(tenant, "x@example.net", app="billing")
    billing = await new_token(tenant.client, "sender", app="billing")
    async with smtp_client(plain.port) as smtp:
        await smtp.login("acme", billing)
        await smtp.mail("noreply@acme.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused):
            await smtp.rcpt("x@example.net")
    async with smtp_client(plain.port) as smtp:
        await smtp.login("acme", token_of(tenant))
        await smtp.mail("noreply@acme.example")
        code, _ = await smtp.rcpt("x@example.net")
        assert code == 250


async def test_redirected_rcpts_pass_and_suppressed_test_addresses_refuse_data(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/test-list",
        json={"addresses": ["qa@test.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    await suppress(tenant, "customer@example.net")
    entry = await suppress(tenant, "qa@test.example")
    billing = await new_token(tenant.client, "sender", app="billing")
    async with smtp_client(plain.port) as smtp:
        await smtp.login("acme", billing)
        await smtp.mail("noreply@acme.example")
        # Redirected to the test list: the customer's own entry does not apply.
        code, _ = await smtp.rcpt("customer@example.net")
        assert code == 250
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.data(message(to="customer@example.net"))
    assert refused.value.code == 550
    assert refused.value.message.startswith("5.7.1 qa@test.example is suppressed")
    assert entry["id"] in refused.value.message


async def test_a_suppressed_test_address_is_left_out_of_submitted_mail(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    r = await tenant.client.put(
        f"{T}/apps/billing/test-list",
        json={"addresses": ["qa1@test.example", "qa2@test.example"], "active": True},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    await suppress(tenant, "qa1@test.example", reason="complaint")
    billing = await new_token(tenant.client, "sender", app="billing")
    async with smtp_client(plain.port) as smtp:
        await smtp.login("acme", billing)
        await smtp.mail("noreply@acme.example")
        await smtp.rcpt("customer@example.net")
        code, reply = await smtp.data(message(to="customer@example.net"))
    assert code == 250
    stored = await tenant.message(queued_id(reply))
    assert {x["email"]: x["status"] for x in stored["recipients"]} == {
        "qa2@test.example": "pending",
        "qa1@test.example": "suppressed",
    }
