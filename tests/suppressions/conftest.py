"""Fixtures for suppression tests: the delivery tests' tenant (``acme``, app ``billing``)."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN
from tests.delivery.conftest import T, Tenant, tenant

__all__ = ["suppress", "tenant"]


async def suppress(t: Tenant, email: str, **fields: Any) -> dict[str, Any]:
    r = await t.client.post(f"{T}/suppressions", json={"email": email, **fields}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())
