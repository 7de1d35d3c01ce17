"""GET /tenants/{t}/routing: routes per stage and every problem, with the action that fixes it."""

from __future__ import annotations

from sqlalchemy import update

from mailgate.storage.tables import email_accounts, mail_servers, messages
from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant


async def _routing(tenant: Tenant) -> dict[str, object]:
    r = await tenant.client.get(f"{T}/routing", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _codes(report: dict[str, object]) -> set[str]:
    return {p["code"] for p in report["problems"]}  # type: ignore[attr-defined]


async def test_a_working_tenant_routes_every_stage_and_warns_of_missing_dkim(
    tenant: Tenant,
) -> None:
    report = await _routing(tenant)
    assert report["ok"] is True
    routes = {r["stage"]: r for r in report["routes"]}  # type: ignore[attr-defined]
    assert set(routes) == {None, "development", "test", "production"}
    # No stage has a server: the default account's own server (Capture) takes the mail.
    assert {r["server_name"] for r in routes.values()} == {"Capture"}
    assert {r["reason"] for r in routes.values()} == {"account"}
    assert _codes(report) == {"dkim_missing"}
    r = await tenant.client.post(
        f"{T}/dkim-keys",
        json={"domain": "acme.example", "selector": "s1", "algorithm": "ed25519"},
        headers=ADMIN,
    )
    assert r.status_code == 201
    assert _codes(await _routing(tenant)) == set()


async def test_a_stage_server_wins_and_a_deleted_route_is_an_error(tenant: Tenant) -> None:
    relay = await tenant.server(2525, name="Relay", is_default=False)
    report = await _routing(tenant)
    production = next(r for r in report["routes"] if r["stage"] == "production")  # type: ignore[attr-defined]
    assert (production["server_name"], production["reason"]) == ("Relay", "stage")

    servers = (await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)).json()["items"]
    capture = next(s for s in servers if s["name"] == "Capture")
    # The account loses its server (as after its server was deleted): stages without their
    # own server have no route.
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(update(email_accounts).values(mail_server_id=None))
    report = await _routing(tenant)
    assert report["ok"] is False
    no_route = {p["stage"] for p in report["problems"] if p["code"] == "no_route"}  # type: ignore[attr-defined]
    # The default account cannot send at all, so no stage routes its mail.
    assert no_route == {None, "development", "test", "production"}
    assert "account_without_server" in _codes(report)
    assert all(
        "Assign a mail server" in p["action"]
        for p in report["problems"]  # type: ignore[attr-defined]
        if p["code"] == "no_route"
    )
    assert capture["id"] not in {r["server_id"] for r in report["routes"]}  # type: ignore[attr-defined]
    assert relay["id"]


async def test_refused_credentials_and_held_mail_are_reported(tenant: Tenant) -> None:
    message = await tenant.send_ok()
    servers = (await tenant.client.get(f"{T}/mail-servers", headers=ADMIN)).json()["items"]
    capture = servers[0]["id"]
    async with tenant.ctx.db.transaction() as tx:
        await tx.execute(
            update(mail_servers)
            .where(mail_servers.c.id == capture)
            .values(status="auth_failed", status_detail="535 5.7.8 bad credentials")
        )
        await tx.execute(
            update(messages)
            .where(messages.c.id == message)
            .values(held=True, next_attempt_at=None, server_id=capture)
        )
    report = await _routing(tenant)
    assert report["ok"] is False
    problems = {p["code"]: p for p in report["problems"]}  # type: ignore[attr-defined]
    assert "535 5.7.8" in problems["auth_failing"]["message"]
    assert problems["server_on_hold"]["message"].startswith("1 message(s) are held")
    assert problems["server_on_hold"]["server_id"] == capture


async def test_viewers_may_read_the_routing_of_their_tenant_only(tenant: Tenant) -> None:
    r = await tenant.client.get("/api/v1/tenants/nope/routing", headers=tenant.sender)
    assert r.status_code == 404
