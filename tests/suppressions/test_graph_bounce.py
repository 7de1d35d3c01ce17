"""Mail sent through Microsoft Graph bounces into the sending mailbox: syncing that mailbox
over IMAP (a real Dovecot) marks the recipient bounced and suppresses it."""

from __future__ import annotations

from typing import Any

from tests.config.helpers import bearer
from tests.conftest import ADMIN
from tests.delivery.conftest import drain
from tests.inbound.bounces import postfix_dsn
from tests.inbound.conftest import Inbox, T, ca, dovecot, inbox, trust_ca
from tests.support.http_fakes import HttpRequest, HttpResponse, HttpServer
from tests.support.tls import TestCA

__all__ = ["ca", "dovecot", "inbox", "trust_ca"]

TOKEN_PATH = "/contoso/oauth2/v2.0/token"


class FakeGraph:
    """Microsoft's token endpoint and Graph's sendMail on one loopback server."""

    def __init__(self) -> None:
        self.sent: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == TOKEN_PATH:
            return HttpResponse.json(200, {"access_token": "graph-token", "expires_in": 3600})
        self.sent.append(request)
        return HttpResponse(202, headers={"request-id": "req-1"})


async def test_a_graph_bounce_read_from_the_sender_mailbox_suppresses(
    inbox: Inbox, ca: TestCA
) -> None:
    fake = FakeGraph()
    async with HttpServer(fake, ssl_context=ca.issue("127.0.0.1").server_context()) as graph:
        base = graph.url()
        r = await inbox.client.post(
            f"{T}/mail-servers",
            json={
                "name": "Graph",
                "engine": "msgraph",
                "sender_upn": "noreply@acme.example",
                "api_base_url": base,
                "ca_certificates": ca.ca_pem,
                "oauth": {
                    "provider": "microsoft",
                    "client_id": "app-id",
                    "client_secret": "graph-client-secret",
                    "tenant_id": "contoso",
                    "token_url": f"{base}{TOKEN_PATH}",
                },
                "stages": ["production"],
            },
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        token = await inbox.client.post(
            f"{T}/tokens", json={"name": "app", "role": "sender"}, headers=ADMIN
        )
        sender = bearer(token.json()["token"])
        body: dict[str, Any] = {"stage": "production", "subject": "Invoice", "text": "Hi."}
        r = await inbox.client.post(
            f"{T}/messages",
            json={**body, "to": ["gone@example.net", "ok@example.net"]},
            headers=sender,
        )
        assert r.status_code == 202, r.text
        sent = r.json()
        await drain(inbox.ctx)
    assert len(fake.sent) == 1
    message = (await inbox.client.get(f"{T}/messages/{sent['id']}", headers=ADMIN)).json()
    assert message["status"] == "sent" and message["attempts"][0]["engine"] == "msgraph"

    # Exchange returns the NDR to the sending mailbox, which is the account's IMAP inbox.
    inbox.server.deliver("alice", postfix_dsn(sent["message_id"]))
    counts = await inbox.sync_ok()
    assert counts["bounced_recipients"] == 1
    message = (await inbox.client.get(f"{T}/messages/{sent['id']}", headers=ADMIN)).json()
    assert {x["email"]: x["status"] for x in message["recipients"]} == {
        "gone@example.net": "bounced",
        "ok@example.net": "sent",
    }
    r = await inbox.client.post(
        f"{T}/messages", json={**body, "to": ["gone@example.net"]}, headers=sender
    )
    assert r.status_code == 422, r.text
    assert "hard_bounce" in r.json()["errors"][0]["message"]
