"""A hostile SMTP server that echoes the AUTH payload: no stored or shown text keeps it.

End to end: a message is sent through the API, the worker delivers to a scripted server
that repeats the password, its base64 form and the SASL PLAIN payload in its 535 reply,
and then every row Mailgate stored (message, attempts, server status, webhook events,
audit) and every answer of the API is searched for them.
"""

from __future__ import annotations

import base64

from sqlalchemy import select
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, drain, engines, tenant
from tests.engines.probe_support import RawServer, free_port

from mailgate.engines.factory import EngineCache
from mailgate.storage import tables

__all__ = ["engines", "tenant"]

USER = "echo-user"
PASSWORD = "echo-Secret-Pa55word"
FORMS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
)
EHLO = b"250-echo.mailgate.test\r\n250 AUTH PLAIN LOGIN\r\n"
ECHO = ("535 5.7.8 bad credentials: " + " ".join(FORMS) + "\r\n").encode()


async def test_echoed_secrets_are_neither_stored_nor_shown(
    tenant: Tenant, engines: EngineCache
) -> None:
    hook = await tenant.client.post(
        f"{T}/webhooks",
        json={
            "url": f"https://127.0.0.1:{free_port()}/in",
            "events": ["message.deferred", "message.failed"],
            "secret": "webhook-secret-0123456789abcdef",
        },
        headers=ADMIN,
    )
    assert hook.status_code == 201, hook.text
    async with RawServer(replies={"EHLO": EHLO, "AUTH": ECHO, "QUIT": b"221 bye\r\n"}) as raw:
        server = await tenant.server(
            raw.port,
            auth="password",
            username=USER,
            password=PASSWORD,
            allow_insecure_auth=True,
        )
        message_id = await tenant.send_ok(stage="production")
        await drain(tenant.ctx, engines=engines)
    message = await tenant.message(message_id)
    assert message["status"] == "deferred", message
    assert "bad credentials" in message["last_error"]
    assert any("bad credentials" in (a.get("reply") or "") for a in message["attempts"])

    deliveries = await tenant.client.get(
        f"{T}/webhooks/{hook.json()['id']}/deliveries", headers=ADMIN
    )
    assert [d["event"] for d in deliveries.json()["items"]] == ["message.deferred"]
    shown = [
        (await tenant.client.get(f"{T}/messages/{message_id}", headers=ADMIN)).text,
        (await tenant.client.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)).text,
        (
            await tenant.client.get(f"{T}/webhooks/{hook.json()['id']}/deliveries", headers=ADMIN)
        ).text,
        (await tenant.client.get(f"{T}/audit", headers=ADMIN)).text,
    ]
    stored: list[str] = []
    async with tenant.ctx.db.read() as tx:
        for table in tables.metadata.sorted_tables:
            for row in (await tx.execute(select(table))).all():
                stored.append(repr(tuple(row)))
    leaks = [form for form in FORMS for text in shown + stored if form in text]
    assert leaks == []
    assert any("bad credentials" in text for text in stored)
