"""An account's IMAP auth settings: xoauth2 with imap.oauth, ca_certificates, and the 422s."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailgate.domain.roles import Permission
from mailgate.errors import ConfigurationError, ValidationFailed
from mailgate.runtime import Context
from mailgate.services import inbound
from mailgate.services.auth import authorize
from tests.config.helpers import new_tenant
from tests.config_file.helpers import CLI
from tests.conftest import ADMIN
from tests.inbound.test_oauth_inbox import CLIENT_SECRET, service_account_json
from tests.support.smtp_servers import free_port
from tests.support.tls import TestCA

T = "/api/v1/tenants/acme"

MICROSOFT = {
    "provider": "microsoft",
    "client_id": "app-1",
    "client_secret": CLIENT_SECRET,
    "tenant_id": "contoso.onmicrosoft.com",
}


def imap(**extra: Any) -> dict[str, Any]:
    return {"host": "outlook.office365.com", "username": "ops@contoso.example", **extra}


async def account(client: httpx.AsyncClient, imap_body: dict[str, Any]) -> httpx.Response:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    assert capture.status_code == 201, capture.text
    return await client.post(
        f"{T}/email-accounts",
        json={
            "address": "ops@contoso.example",
            "display_name": "Ops",
            "mail_server_id": capture.json()["id"],
            "imap": imap_body,
        },
        headers=ADMIN,
    )


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    return str(r.json()["errors"][0]["field"])


async def test_xoauth2_account_keeps_its_secrets_write_only(client: httpx.AsyncClient) -> None:
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))

    assert r.status_code == 201, r.text
    out = r.json()["imap"]
    assert out["auth"] == "xoauth2"
    assert out["password_set"] is False
    assert out["oauth"] == {
        "provider": "microsoft",
        "client_id": "app-1",
        "tenant_id": "contoso.onmicrosoft.com",
        "scope": None,
        "token_url": None,
        "subject": None,
        "client_secret_set": True,
        "service_account_json_set": False,
    }
    listed = await client.get(f"{T}/email-accounts", headers=ADMIN)
    assert CLIENT_SECRET not in listed.text and CLIENT_SECRET not in r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (imap(auth="xoauth2"), "imap.oauth"),
        (
            imap(auth="xoauth2", oauth={**MICROSOFT, "client_secret": None}),
            "imap.oauth.client_secret",
        ),
        (imap(auth="xoauth2", oauth={**MICROSOFT, "client_id": None}), "imap.oauth.client_id"),
        (imap(auth="xoauth2", oauth={**MICROSOFT, "tenant_id": None}), "imap.oauth.tenant_id"),
        (
            imap(auth="xoauth2", oauth={**MICROSOFT, "token_url": "http://login.example/t"}),
            "imap.oauth.token_url",
        ),
        (imap(auth="xoauth2", oauth={"provider": "google"}), "imap.oauth.service_account_json"),
        (
            imap(auth="xoauth2", oauth={"provider": "google", "service_account_json": "{"}),
            "imap.oauth.service_account_json",
        ),
        (imap(auth="kerberos"), "imap.auth"),
        (imap(ca_certificates="not a certificate"), "imap.ca_certificates"),
    ],
)
async def test_settings_that_cannot_work_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await account(client, body)

    assert field_of(r) == field
    assert CLIENT_SECRET not in r.text


async def test_google_service_account_is_checked_and_hidden(client: httpx.AsyncClient) -> None:
    key = service_account_json()
    r = await account(
        client, imap(auth="xoauth2", oauth={"provider": "google", "service_account_json": key})
    )

    assert r.status_code == 201, r.text
    assert r.json()["imap"]["oauth"]["service_account_json_set"] is True
    assert "PRIVATE KEY" not in r.text


async def test_a_stored_client_secret_is_not_sent_to_a_new_token_endpoint(
    client: httpx.AsyncClient,
) -> None:
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))
    assert r.status_code == 201, r.text
    url = f"{T}/email-accounts/{r.json()['id']}"
    kept = {k: v for k, v in MICROSOFT.items() if k != "client_secret"}

    same = await client.patch(url, json={"imap": imap(auth="xoauth2", oauth=kept)}, headers=ADMIN)
    moved = await client.patch(
        url,
        json={"imap": imap(auth="xoauth2", oauth={**kept, "token_url": "https://evil.example/t"})},
        headers=ADMIN,
    )

    assert same.status_code == 200, same.text
    assert same.json()["imap"]["oauth"]["client_secret_set"] is True
    assert field_of(moved) == "imap.oauth.client_secret"


async def test_dropping_oauth_forgets_its_secrets(client: httpx.AsyncClient) -> None:
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))
    url = f"{T}/email-accounts/{r.json()['id']}"

    r = await client.patch(
        url, json={"imap": imap(auth="password", password="app-password")}, headers=ADMIN
    )

    assert r.status_code == 200, r.text
    assert r.json()["imap"]["auth"] == "password"
    assert r.json()["imap"]["oauth"] is None
    assert r.json()["imap"]["password_set"] is True


async def test_ca_certificates_are_kept(client: httpx.AsyncClient, tmp_path: Path) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    r = await account(client, imap(password="x", ca_certificates=pem))

    assert r.status_code == 201, r.text
    assert r.json()["imap"]["ca_certificates"] == pem


async def test_test_inbox_needs_an_inbox(client: httpx.AsyncClient) -> None:
    await new_tenant(client)
    capture = await client.post(
        f"{T}/mail-servers", json={"name": "Capture", "engine": "capture"}, headers=ADMIN
    )
    r = await client.post(
        f"{T}/email-accounts",
        json={
            "address": "a@contoso.example",
            "display_name": "A",
            "mail_server_id": capture.json()["id"],
        },
        headers=ADMIN,
    )

    test = await client.post(f"{T}/email-accounts/{r.json()['id']}/test-inbox", headers=ADMIN)

    assert field_of(test) == "imap"


async def test_an_imap_object_without_auth_keeps_the_oauth_sign_in(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT, ca_certificates=pem))
    url = f"{T}/email-accounts/{r.json()['id']}"

    r = await client.patch(url, json={"imap": imap(folder="Bounces")}, headers=ADMIN)

    assert r.status_code == 200, r.text
    out = r.json()["imap"]
    assert out["folder"] == "Bounces" and out["auth"] == "xoauth2"
    assert out["oauth"]["client_secret_set"] is True and out["ca_certificates"] == pem
    cleared = await client.patch(url, json={"imap": imap(ca_certificates=None)}, headers=ADMIN)
    assert cleared.json()["imap"]["ca_certificates"] is None


async def test_an_unreachable_token_endpoint_is_token_unavailable(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    closed = free_port()  # nothing listens there
    oauth = {**MICROSOFT, "token_url": f"http://127.0.0.1:{closed}/t/oauth2/v2.0/token"}
    r = await account(client, imap(host="127.0.0.1", auth="xoauth2", oauth=oauth))
    assert r.status_code == 201, r.text
    ctx.policy = replace(ctx.policy, allowed_networks=("127.0.0.1/32",))

    test = await client.post(f"{T}/email-accounts/{r.json()['id']}/test-inbox", headers=ADMIN)

    assert test.status_code == 200, test.text
    report = test.json()
    assert report["ok"] is False
    assert [s["name"] for s in report["steps"]] == ["token"]
    assert report["error"]["code"] == "token_unavailable"
    assert report["error"]["field"] == "imap.oauth.token_url"
    assert CLIENT_SECRET not in test.text


async def test_the_token_endpoint_is_subject_to_the_network_policy(
    client: httpx.AsyncClient,
) -> None:
    oauth = {**MICROSOFT, "token_url": "http://127.0.0.1:9/t"}
    r = await account(client, imap(auth="xoauth2", oauth=oauth))

    test = await client.post(f"{T}/email-accounts/{r.json()['id']}/test-inbox", headers=ADMIN)

    error = test.json()["error"]
    assert error["code"] == "token_unavailable"
    assert "network policy" in error["message"]


async def test_oauth_settings_the_provider_cannot_use_are_422_on_sync(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)

    def unusable(dialer: object) -> Any:
        def factory(target: object) -> Any:
            raise ConfigurationError("inbox: oauth.client_id is required")

        return factory

    with pytest.raises(ValidationFailed) as caught:
        await inbound.sync_now(ctx, caller, r.json()["id"], tokens=unusable)

    assert caught.value.errors[0].field == "imap.oauth"


async def test_new_ca_certificates_need_the_password_again(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    r = await account(client, imap(password="imap-secret-7"))
    assert r.status_code == 201, r.text
    url = f"{T}/email-accounts/{r.json()['id']}"

    trusting = await client.patch(url, json={"imap": imap(ca_certificates=pem)}, headers=ADMIN)
    given = await client.patch(
        url, json={"imap": imap(ca_certificates=pem, password="imap-secret-8")}, headers=ADMIN
    )

    assert field_of(trusting) == "imap.password"
    assert "changing imap ca_certificates requires the password again" in trusting.text
    assert given.status_code == 200, given.text
    assert given.json()["imap"]["ca_certificates"] == pem


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "fabrikam.onmicrosoft.com"},
        {"provider": "google", "service_account_json": None},
    ],
)
async def test_a_stored_client_secret_does_not_follow_a_new_tenant_or_provider(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))
    url = f"{T}/email-accounts/{r.json()['id']}"
    kept = {k: v for k, v in MICROSOFT.items() if k != "client_secret"}

    moved = await client.patch(
        url, json={"imap": imap(auth="xoauth2", oauth={**kept, **change})}, headers=ADMIN
    )

    assert field_of(moved) == "imap.oauth.client_secret"


async def test_new_ca_certificates_need_the_client_secret_again(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    r = await account(client, imap(auth="xoauth2", oauth=MICROSOFT))
    url = f"{T}/email-accounts/{r.json()['id']}"

    trusting = await client.patch(url, json={"imap": imap(ca_certificates=pem)}, headers=ADMIN)
    given = await client.patch(
        url,
        json={"imap": imap(auth="xoauth2", oauth=MICROSOFT, ca_certificates=pem)},
        headers=ADMIN,
    )

    assert field_of(trusting) == "imap.oauth.client_secret"
    assert "ca_certificates" in trusting.json()["errors"][0]["message"]
    assert given.status_code == 200, given.text
    assert given.json()["imap"]["ca_certificates"] == pem
