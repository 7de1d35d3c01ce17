"""Every configuration endpoint and every role: 403 without the permission, 404 across tenants."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from mailgate.domain.roles import ROLE_PERMISSIONS, Permission, Role
from mailgate.runtime import Context
from mailgate.storage.tables import messages
from tests.config.helpers import create_server, new_tenant, token_for
from tests.conftest import ADMIN
from tests.support.tls import TestCA

V = Permission.VIEW_EMAIL_CONFIGURATIONS
M = Permission.MANAGE_EMAIL_CONFIGURATIONS
A = Permission.MANAGE_APPS
U = Permission.MANAGE_MEMBERS
T = Permission.MANAGE_TENANT
S = Permission.SEND_EMAIL
L = Permission.VIEW_EMAIL_LOGS

# (method, path, body, permission). {t}, {server}, {account}, {user}, {token} are filled in.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, Permission]] = [
    ("GET", "/api/v1/tenants/{t}", None, V),
    ("PATCH", "/api/v1/tenants/{t}", {"name": "Renamed"}, T),
    ("GET", "/api/v1/tenants/{t}/stages", None, V),
    ("POST", "/api/v1/tenants/{t}/stages", {"name": "stage-{n}"}, M),
    ("DELETE", "/api/v1/tenants/{t}/stages/stage-x", None, M),
    ("GET", "/api/v1/tenants/{t}/mail-servers", None, V),
    (
        "POST",
        "/api/v1/tenants/{t}/mail-servers",
        {"name": "srv-{n}", "host": "smtp.example.com"},
        M,
    ),
    ("GET", "/api/v1/tenants/{t}/mail-servers/{server}", None, V),
    ("PATCH", "/api/v1/tenants/{t}/mail-servers/{server}", {"timeout_seconds": 20}, M),
    ("DELETE", "/api/v1/tenants/{t}/mail-servers/{doomed}", None, M),
    ("GET", "/api/v1/tenants/{t}/email-accounts", None, V),
    (
        "POST",
        "/api/v1/tenants/{t}/email-accounts",
        {"address": "a{n}@acme.example", "display_name": "A", "mail_server_id": "{server}"},
        M,
    ),
    ("GET", "/api/v1/tenants/{t}/email-accounts/{account}", None, V),
    ("PATCH", "/api/v1/tenants/{t}/email-accounts/{account}", {"display_name": "B"}, M),
    ("DELETE", "/api/v1/tenants/{t}/email-accounts/{doomed_account}", None, M),
    # IMAP inbox (the account has none: sync answers 422 once the permission check passed).
    ("POST", "/api/v1/tenants/{t}/email-accounts/{account}/sync", None, M),
    ("GET", "/api/v1/tenants/{t}/email-accounts/{account}/inbox", None, L),
    ("GET", "/api/v1/tenants/{t}/apps", None, V),
    ("POST", "/api/v1/tenants/{t}/apps", {"name": "app-{n}"}, A),
    ("GET", "/api/v1/tenants/{t}/apps/billing", None, V),
    ("PATCH", "/api/v1/tenants/{t}/apps/doomed-app", {"name": "doomed-app"}, A),
    ("GET", "/api/v1/tenants/{t}/apps/billing/test-list", None, V),
    ("PUT", "/api/v1/tenants/{t}/apps/billing/test-list", {"addresses": [], "active": False}, A),
    ("GET", "/api/v1/tenants/{t}/apps/billing/stages/test/test-list", None, V),
    ("PUT", "/api/v1/tenants/{t}/apps/billing/stages/test/test-list", {"addresses": []}, A),
    ("DELETE", "/api/v1/tenants/{t}/apps/doomed-app", None, A),
    ("GET", "/api/v1/tenants/{t}/tokens", None, U),
    ("POST", "/api/v1/tenants/{t}/tokens", {"name": "t{n}", "role": "viewer"}, U),
    ("DELETE", "/api/v1/tenants/{t}/tokens/{token}", None, U),
    ("GET", "/api/v1/tenants/{t}/users", None, U),
    (
        "POST",
        "/api/v1/tenants/{t}/users",
        {"email": "u{n}@acme.example", "password": "long enough pw", "role": "viewer"},
        U,
    ),
    ("GET", "/api/v1/tenants/{t}/users/{user}", None, U),
    ("PATCH", "/api/v1/tenants/{t}/users/{user}", {"role": "sender"}, U),
    ("DELETE", "/api/v1/tenants/{t}/users/{user}", None, U),
    ("GET", "/api/v1/tenants/{t}/audit", None, V),
    # Sending and the delivery log.
    ("POST", "/api/v1/tenants/{t}/messages", {"to": ["a@example.com"], "text": "x"}, S),
    (
        "POST",
        "/api/v1/tenants/{t}/messages/batch",
        {"messages": [{"to": ["a@example.com"], "text": "x"}]},
        S,
    ),
    ("GET", "/api/v1/tenants/{t}/messages", None, L),
    ("GET", "/api/v1/tenants/{t}/messages/stats", None, L),
    ("GET", "/api/v1/tenants/{t}/messages/{message}", None, L),
    ("GET", "/api/v1/tenants/{t}/messages/{message}/raw", None, L),
    ("POST", "/api/v1/tenants/{t}/messages/{message}/cancel", None, S),
    ("POST", "/api/v1/tenants/{t}/messages/{failed}/retry", None, S),
    # Test connection (the destination is loopback: refused by policy, nothing is dialled).
    ("POST", "/api/v1/tenants/{t}/mail-servers/{loop}/test", None, M),
    ("POST", "/api/v1/tenants/{t}/mail-servers/test", {"host": "127.0.0.1", "port": 2}, M),
    # Webhooks (a public address literal: no name to resolve, nothing is dialled at creation).
    (
        "POST",
        "/api/v1/tenants/{t}/webhooks",
        {"url": "https://93.184.216.34/hook", "events": ["message.sent"]},
        M,
    ),
    ("GET", "/api/v1/tenants/{t}/webhooks", None, V),
    ("GET", "/api/v1/tenants/{t}/webhooks/{webhook}", None, V),
    ("GET", "/api/v1/tenants/{t}/webhooks/{webhook}/deliveries", None, V),
    ("POST", "/api/v1/tenants/{t}/webhooks/{webhook}/enable", None, M),
    (
        "PATCH",
        "/api/v1/tenants/{t}/webhooks/{webhook}",
        {"events": ["message.sent", "message.failed"]},
        M,
    ),
    ("POST", "/api/v1/tenants/{t}/webhooks/{webhook}/rotate-secret", {"overlap_hours": 1}, M),
    ("DELETE", "/api/v1/tenants/{t}/webhooks/{doomed_webhook}", None, M),
    # DKIM keys, keystores, templates.
    (
        "POST",
        "/api/v1/tenants/{t}/dkim-keys",
        {"domain": "k{n}.acme.example", "selector": "s1", "algorithm": "ed25519"},
        M,
    ),
    ("GET", "/api/v1/tenants/{t}/dkim-keys", None, V),
    ("GET", "/api/v1/tenants/{t}/dkim-keys/{dkim}", None, V),
    ("DELETE", "/api/v1/tenants/{t}/dkim-keys/{dkim}", None, M),
    (
        "POST",
        "/api/v1/tenants/{t}/keystores",
        {"name": "ca-{n}", "kind": "ca", "content": "{ca_b64}"},
        M,
    ),
    ("GET", "/api/v1/tenants/{t}/keystores", None, V),
    ("GET", "/api/v1/tenants/{t}/keystores/{keystore}", None, V),
    ("PATCH", "/api/v1/tenants/{t}/keystores/{keystore}", {"content": "{ca_b64}"}, M),
    ("DELETE", "/api/v1/tenants/{t}/keystores/{keystore}", None, M),
    ("PUT", "/api/v1/tenants/{t}/templates/t{n}", {"subject": "Hi {{ name }}", "text": "x"}, A),
    ("GET", "/api/v1/tenants/{t}/templates", None, V),
    ("GET", "/api/v1/tenants/{t}/templates/welcome", None, V),
    ("DELETE", "/api/v1/tenants/{t}/templates/welcome", None, A),
    ("DELETE", "/api/v1/tenants/{t}", None, T),
]


def _fill(value: Any, ids: dict[str, str], n: int) -> Any:
    if isinstance(value, str):
        return value.format(n=n, **ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids, n) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids, n) for v in value]
    return value


async def _objects(
    client: httpx.AsyncClient, tenant: str, tmp: Path, ctx: Context
) -> dict[str, str]:
    server = await create_server(client, tenant, name="Main")
    doomed = await create_server(client, tenant, name="Doomed")
    base = f"/api/v1/tenants/{tenant}"
    account = await client.post(
        f"{base}/email-accounts",
        json={"address": "ops@acme.example", "display_name": "Ops", "mail_server_id": server["id"]},
        headers=ADMIN,
    )
    doomed_account = await client.post(
        f"{base}/email-accounts",
        json={"address": "old@acme.example", "display_name": "Old", "mail_server_id": server["id"]},
        headers=ADMIN,
    )
    for app in ("billing", "doomed-app"):
        await client.post(f"{base}/apps", json={"name": app}, headers=ADMIN)
    await client.post(f"{base}/stages", json={"name": "stage-x"}, headers=ADMIN)
    user = await client.post(
        f"{base}/users",
        json={"email": "user@acme.example", "password": "long enough pw", "role": "viewer"},
        headers=ADMIN,
    )
    token = await client.post(f"{base}/tokens", json={"name": "x", "role": "viewer"}, headers=ADMIN)
    loop = await create_server(client, tenant, name="Loop", host="127.0.0.1", port=2)
    capture = await client.post(
        f"{base}/mail-servers",
        json={"name": "Capture", "engine": "capture", "is_default": True},
        headers=ADMIN,
    )
    await client.patch(
        f"{base}/email-accounts/{account.json()['id']}",
        json={"is_default": True, "mail_server_id": capture.json()["id"]},
        headers=ADMIN,
    )
    later = {"to": ["a@example.com"], "text": "x", "send_at": "2099-01-01T00:00:00Z"}
    message = await client.post(f"{base}/messages", json=later, headers=ADMIN)
    failed = await client.post(f"{base}/messages", json=later, headers=ADMIN)
    async with ctx.db.transaction() as tx:  # a message that failed, ready for a manual retry
        await tx.execute(
            update(messages).where(messages.c.id == failed.json()["id"]).values(status="failed")
        )
    hooks = [
        await client.post(
            f"{base}/webhooks",
            json={"url": "https://93.184.216.34/hook", "events": ["message.sent"]},
            headers=ADMIN,
        )
        for _ in range(2)
    ]
    dkim = await client.post(
        f"{base}/dkim-keys",
        json={"domain": "acme.example", "selector": "s0", "algorithm": "ed25519"},
        headers=ADMIN,
    )
    ca_b64 = base64.b64encode(TestCA(tmp / "pki").ca_pem.encode()).decode()
    keystore = await client.post(
        f"{base}/keystores", json={"name": "ca", "kind": "ca", "content": ca_b64}, headers=ADMIN
    )
    await client.put(
        f"{base}/templates/welcome", json={"subject": "Welcome", "text": "Hi"}, headers=ADMIN
    )
    for response in (message, failed, *hooks, dkim, keystore):
        assert response.status_code in (201, 202), response.text
    return {
        "t": tenant,
        "server": server["id"],
        "doomed": doomed["id"],
        "account": account.json()["id"],
        "doomed_account": doomed_account.json()["id"],
        "user": user.json()["id"],
        "token": token.json()["id"],
        "loop": loop["id"],
        "message": message.json()["id"],
        "failed": failed.json()["id"],
        "webhook": hooks[0].json()["id"],
        "doomed_webhook": hooks[1].json()["id"],
        "dkim": dkim.json()["id"],
        "keystore": keystore.json()["id"],
        "ca_b64": ca_b64,
    }


async def test_forbidden_roles_get_403_and_change_nothing(
    client: httpx.AsyncClient, tmp_path: Path, ctx: Context
) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant, tmp_path, ctx)
    headers = {role: await token_for(client, tenant, role.value) for role in Role}
    checked = 0
    for n, (method, path, body, permission) in enumerate(ENDPOINTS):
        for role in Role:
            if permission in ROLE_PERMISSIONS[role]:
                continue
            r = await client.request(
                method, _fill(path, ids, n), json=_fill(body, ids, n), headers=headers[role]
            )
            assert r.status_code == 403, (method, path, role, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            checked += 1
    assert checked > 60
    # Nothing the forbidden calls tried was done.
    servers = (await client.get(f"/api/v1/tenants/{tenant}/mail-servers", headers=ADMIN)).json()
    assert sorted(s["name"] for s in servers["items"]) == ["Capture", "Doomed", "Loop", "Main"]


async def test_allowed_roles_pass_the_permission_check(
    client: httpx.AsyncClient, tmp_path: Path, ctx: Context
) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant, tmp_path, ctx)
    headers = {role: await token_for(client, tenant, role.value) for role in Role}
    for n, (method, path, body, permission) in enumerate(ENDPOINTS):
        if path == "/api/v1/tenants/{t}" and method == "DELETE":
            continue  # run last, below
        allowed = [r for r in Role if permission in ROLE_PERMISSIONS[r]]
        assert allowed, path
        role = allowed[-1]  # the least privileged role holding the permission
        r = await client.request(
            method, _fill(path, ids, n), json=_fill(body, ids, n), headers=headers[role]
        )
        passed = (200, 201, 202, 204) + ((422,) if path.endswith("/sync") else ())
        assert r.status_code in passed, (method, path, role, r.status_code, r.text)
    r = await client.delete(f"/api/v1/tenants/{tenant}", headers=headers[Role.OWNER])
    assert r.status_code == 204


async def test_other_tenants_tokens_get_404_everywhere(
    client: httpx.AsyncClient, tmp_path: Path, ctx: Context
) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant, tmp_path, ctx)
    await new_tenant(client, "rival")
    rival_owner = await token_for(client, "rival", "owner")
    for n, (method, path, body, _) in enumerate(ENDPOINTS):
        r = await client.request(
            method, _fill(path, ids, n), json=_fill(body, ids, n), headers=rival_owner
        )
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # Object ids of another tenant are unknown inside one's own tenant too.
    r = await client.get(f"/api/v1/tenants/rival/mail-servers/{ids['server']}", headers=rival_owner)
    assert r.status_code == 404
