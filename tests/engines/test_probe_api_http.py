"""Test connection of the HTTP engines through the API: the report, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.config.test_probe_api import api
from tests.conftest import ADMIN
from tests.engines.probe_support import free_port

__all__ = ["api"]

BASE = "/api/v1/tenants/acme/mail-servers"


def sendgrid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "SendGrid",
        "engine": "sendgrid",
        "api_key": "SG.test-key",
        "api_base_url": f"https://127.0.0.1:{free_port()}",
        "timeout_seconds": 2,
    }
    body.update(changes)
    return body


def graph(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Graph",
        "engine": "msgraph",
        "sender_upn": "sender@mailgate.test",
        "oauth": {
            "provider": "microsoft",
            "client_id": "app-id",
            "client_secret": "app-secret",
            "tenant_id": "directory-id",
            "token_url": f"https://127.0.0.1:{free_port()}/token",
        },
        "api_base_url": f"https://127.0.0.1:{free_port()}",
        "timeout_seconds": 2,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize("make", [sendgrid, graph], ids=["sendgrid", "msgraph"])
async def test_https_api_unsaved_and_saved(api: httpx.AsyncClient, make: Any) -> None:
    body = make()
    unsaved = await api.post(f"{BASE}/test", json=body, headers=ADMIN)
    assert unsaved.status_code == 200, unsaved.text
    report = unsaved.json()
    assert report["security"] == "HTTPS"
    assert report["ok"] is False
    assert report["error"]["code"] in {"connection_refused", "oauth_token_failed"}
    created = await api.post(BASE, json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    saved = await api.post(f"{BASE}/{created.json()['id']}/test", headers=ADMIN)
    assert saved.status_code == 200, saved.text
    assert saved.json()["security"] == "HTTPS"
    assert "SG.test-key" not in unsaved.text + saved.text
    assert "app-secret" not in unsaved.text + saved.text


async def test_invalid_base_url_is_a_report(api: httpx.AsyncClient) -> None:
    r = await api.post(
        f"{BASE}/test", json=sendgrid(api_base_url="http://api.sendgrid.example"), headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert r.json()["security"] == "HTTPS"
    assert r.json()["error"]["code"] == "invalid_configuration"
    assert "api_base_url" in r.json()["error"]["message"]
