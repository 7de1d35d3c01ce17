"""SendGrid categories as docs/engines.md documents them: ``X-Mailgate-Categories``.

The header is the one ``X-Mailgate-`` field a sender may set, through the REST API and
through SMTP submission; the SendGrid engine sends its values as ``categories`` and drops
the header itself.
"""

from __future__ import annotations

import pytest
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, tenant
from tests.support.http_fakes import HttpResponse, HttpServer

from mailgate.compose.headers import validate_headers
from mailgate.errors import ValidationFailed
from mailgate.services.raw_message import parse_message
from mailgate.services.submit_headers import read_headers

__all__ = ["tenant"]

RAW = (
    b"From: Acme <noreply@acme.example>\r\n"
    b"To: rcpt@example.com\r\n"
    b"Subject: Monthly\r\n"
    b"X-Mailgate-Categories: reports, monthly\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


async def test_the_api_sends_categories_to_sendgrid(tenant: Tenant) -> None:
    async with HttpServer.answering(HttpResponse(202)) as sendgrid:
        server = await tenant.client.post(
            f"{T}/mail-servers",
            json={
                "name": "SendGrid",
                "engine": "sendgrid",
                "api_key": "SG.categories-key",
                "api_base_url": sendgrid.url(),
                "stages": ["production"],
                "is_default": True,
            },
            headers=ADMIN,
        )
        assert server.status_code == 201, server.text
        accounts = await tenant.client.get(f"{T}/email-accounts", headers=ADMIN)
        account_id = accounts.json()["items"][0]["id"]
        moved = await tenant.client.patch(
            f"{T}/email-accounts/{account_id}",
            json={"mail_server_id": server.json()["id"]},
            headers=ADMIN,
        )
        assert moved.status_code == 200, moved.text
        sent = await tenant.send(headers={"X-Mailgate-Categories": "reports, monthly,reports"})
        assert sent.status_code == 202, sent.text
        await drain(tenant.ctx)
        assert (await tenant.message(sent.json()["id"]))["status"] == "sent"
    (request,) = sendgrid.requests
    body = request.json()
    assert body["categories"] == ["reports", "monthly"]
    assert "X-Mailgate-Categories" not in body.get("headers", {})


def test_the_api_accepts_categories_and_still_refuses_other_mailgate_fields() -> None:
    assert validate_headers({"X-Mailgate-Categories": "a, b"}) == {"X-Mailgate-Categories": "a, b"}
    with pytest.raises(ValidationFailed) as refused:
        validate_headers({"X-Mailgate-Tenant": "acme"})
    assert [e.field for e in refused.value.errors] == ["headers.X-Mailgate-Tenant"]


def test_submission_keeps_categories_on_the_wire() -> None:
    headers = read_headers(parse_message(RAW))
    kept = {field.name: field.value for field in headers.kept}
    assert kept["X-Mailgate-Categories"] == "reports, monthly"


def test_submission_still_refuses_other_mailgate_fields() -> None:
    raw = RAW.replace(b"X-Mailgate-Categories", b"X-Mailgate-Tenant")
    with pytest.raises(ValidationFailed) as refused:
        read_headers(parse_message(raw))
    assert [e.field for e in refused.value.errors] == ["X-Mailgate-Tenant"]
