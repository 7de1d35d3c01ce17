"""A token's ``last_used_at`` follows its use (to the minute)."""

from __future__ import annotations

import httpx

from tests.config.helpers import new_tenant, token_for
from tests.conftest import ADMIN


async def test_last_used_is_recorded(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    viewer = await token_for(client, "acme", "viewer")
    listed = (await client.get("/api/v1/tenants/acme/tokens", headers=ADMIN)).json()["items"]
    assert listed[0]["last_used_at"] is None
    assert (await client.get("/api/v1/tenants/acme/stages", headers=viewer)).status_code == 200
    listed = (await client.get("/api/v1/tenants/acme/tokens", headers=ADMIN)).json()["items"]
    first = listed[0]["last_used_at"]
    assert first is not None
    await client.get("/api/v1/tenants/acme/stages", headers=viewer)
    listed = (await client.get("/api/v1/tenants/acme/tokens", headers=ADMIN)).json()["items"]
    assert listed[0]["last_used_at"] == first  # not rewritten within the minute
