"""The Webhooks pages: add (secret shown once), delivery history, rotate, delete (routes)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import httpx

from mailgate.services.context import Context
from tests.conftest import ADMIN
from tests.ui.test_forms import _owner

T = "/api/v1/tenants/acme"
PUBLIC = "https://93.184.216.34/hooks/mailgate"  # an address literal: no DNS needed


def _secret(html: str, input_id: str) -> str:
    found = re.search(rf'id="{input_id}" class="token" readonly value="([^"]+)"', html)
    assert found, "no secret shown"
    return found.group(1)


async def test_add_a_webhook_see_its_secret_once_rotate_and_delete(
    browser_factory: Any, api: httpx.AsyncClient, ctx: Context
) -> None:
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.0/8",))
    b = await _owner(browser_factory, api)
    empty = await b.get("/t/acme/webhooks")
    assert "No webhook yet." in empty.text
    bad = await b.post("/t/acme/webhooks", {"url": "ftp://x", "events": ["message.bounced"]})
    assert bad.status_code == 422
    assert re.search(r'data-field="url".*?class="field-error"', bad.text, re.S)
    none = await b.post("/t/acme/webhooks", {"url": PUBLIC})
    assert none.status_code == 422 and "at least one event" in none.text

    r = await b.post("/t/acme/webhooks", {"url": PUBLIC, "events": ["message.bounced"]})
    assert r.status_code == 200, r.text
    first = _secret(r.text, "new-secret")
    assert first.startswith("whsec_") and "shown only this once" in r.text
    (hook,) = (await api.get(f"{T}/webhooks", headers=ADMIN)).json()["items"]
    detail = await b.get(f"/t/acme/webhooks/{hook['id']}")
    assert first not in detail.text and "No event delivered yet" in detail.text
    listed = await b.get("/t/acme/webhooks")
    assert PUBLIC in listed.text and first not in listed.text

    rotated = await b.post(f"/t/acme/webhooks/{hook['id']}/rotate", {"overlap_hours": "2"})
    second = _secret(rotated.text, "new-secret")
    assert second != first and "also signed until" in rotated.text
    too_long = await b.post(f"/t/acme/webhooks/{hook['id']}/rotate", {"overlap_hours": "9999"})
    assert too_long.status_code == 422 and "Overlap (hours) must be between" in too_long.text

    assert (await b.post(f"/t/acme/webhooks/{hook['id']}/delete")).status_code == 303
    assert (await api.get(f"{T}/webhooks", headers=ADMIN)).json()["items"] == []
