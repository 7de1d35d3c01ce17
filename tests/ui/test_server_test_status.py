"""Testing a saved server stores its result as the server's status (the card's badge); a
passing test gives mail held after an authentication failure a new try."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from mailgate.services.context import Context
from mailgate.storage.tables import mail_servers, messages
from tests.conftest import ADMIN
from tests.support.smtp_servers import free_port
from tests.ui.conftest import add_tenant

T = "/api/v1/tenants/acme"


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    controller = Controller(_Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()


async def test_a_passing_test_sets_ok_and_releases_held_mail(
    api: httpx.AsyncClient, ctx: Context, smtp_port: int
) -> None:
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    await add_tenant(api, "acme")
    relay = {"name": "Relay", "engine": "smtp", "host": "127.0.0.1", "port": smtp_port}
    server = (
        await api.post(
            f"{T}/mail-servers",
            json={**relay, "security": "none", "is_default": True},
            headers=ADMIN,
        )
    ).json()
    assert server["status"] == "unknown"
    account = {"address": "a@acme.test", "display_name": "A", "mail_server_id": server["id"]}
    assert (await api.post(f"{T}/email-accounts", json=account, headers=ADMIN)).status_code == 201
    sent = await api.post(
        f"{T}/messages",
        json={"from": "a@acme.test", "to": ["b@example.com"], "subject": "held", "text": "x"},
        headers=ADMIN,
    )
    assert sent.status_code == 202, sent.text
    async with ctx.db.transaction() as tx:
        await tx.execute(
            update(mail_servers)
            .where(mail_servers.c.id == server["id"])
            .values(status="auth_failed", status_detail="535")
        )
        await tx.execute(
            update(messages)
            .where(messages.c.id == sent.json()["id"])
            .values(held=True, next_attempt_at=None, server_id=server["id"])
        )
    r = await api.post(f"{T}/mail-servers/{server['id']}/test", headers=ADMIN)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    after = (await api.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)).json()
    assert after["status"] == "ok"
    async with ctx.db.read() as tx:
        held: Any = (
            await tx.execute(select(messages.c.held).where(messages.c.id == sent.json()["id"]))
        ).scalar_one()
    assert held is False


async def test_a_failing_test_marks_the_server_unreachable(
    api: httpx.AsyncClient, ctx: Context
) -> None:
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    await add_tenant(api, "acme")
    server = (
        await api.post(
            f"{T}/mail-servers",
            json={
                "name": "Nowhere",
                "engine": "smtp",
                "host": "127.0.0.1",
                "port": 9,
                "security": "none",
            },
            headers=ADMIN,
        )
    ).json()
    r = await api.post(f"{T}/mail-servers/{server['id']}/test", headers=ADMIN)
    assert r.status_code == 200 and r.json()["ok"] is False, r.text
    after = (await api.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)).json()
    assert after["status"] == "unreachable"
    assert after["status_detail"].startswith("Last test: ")


async def test_an_engine_without_a_test_keeps_its_status(
    api: httpx.AsyncClient, ctx: Context
) -> None:
    await add_tenant(api, "acme")
    capture = {"name": "Capture", "engine": "capture"}
    server = (await api.post(f"{T}/mail-servers", json=capture, headers=ADMIN)).json()
    r = await api.post(f"{T}/mail-servers/{server['id']}/test", headers=ADMIN)
    assert r.json()["error"]["code"] == "engine_not_supported"
    after = (await api.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)).json()
    assert after["status"] == "unknown"
