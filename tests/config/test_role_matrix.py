"""Every configuration endpoint and every role: 403 without the permission, 404 across tenants."""

from __future__ import annotations

from typing import Any

import httpx

from mailgate.domain.roles import ROLE_PERMISSIONS, Permission, Role
from tests.config.helpers import create_server, new_tenant, token_for
from tests.conftest import ADMIN

V = Permission.VIEW_EMAIL_CONFIGURATIONS
M = Permission.MANAGE_EMAIL_CONFIGURATIONS
A = Permission.MANAGE_APPS
U = Permission.MANAGE_MEMBERS
T = Permission.MANAGE_TENANT

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
    ("GET", "/api/v1/tenants/{t}/apps", None, V),
    ("POST", "/api/v1/tenants/{t}/apps", {"name": "app-{n}"}, A),
    ("GET", "/api/v1/tenants/{t}/apps/billing", None, V),
    ("PATCH", "/api/v1/tenants/{t}/apps/doomed-app", {"name": "doomed-app"}, A),
    ("GET", "/api/v1/tenants/{t}/apps/billing/test-list", None, V),
    ("PUT", "/api/v1/tenants/{t}/apps/billing/test-list", {"addresses": [], "active": False}, A),
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


async def _objects(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
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
    return {
        "t": tenant,
        "server": server["id"],
        "doomed": doomed["id"],
        "account": account.json()["id"],
        "doomed_account": doomed_account.json()["id"],
        "user": user.json()["id"],
        "token": token.json()["id"],
    }


async def test_forbidden_roles_get_403_and_change_nothing(client: httpx.AsyncClient) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant)
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
    assert sorted(s["name"] for s in servers["items"]) == ["Doomed", "Main"]


async def test_allowed_roles_pass_the_permission_check(client: httpx.AsyncClient) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant)
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
        assert r.status_code in (200, 201, 204), (method, path, role, r.status_code, r.text)
    r = await client.delete(f"/api/v1/tenants/{tenant}", headers=headers[Role.OWNER])
    assert r.status_code == 204


async def test_other_tenants_tokens_get_404_everywhere(client: httpx.AsyncClient) -> None:
    tenant = await new_tenant(client)
    ids = await _objects(client, tenant)
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
