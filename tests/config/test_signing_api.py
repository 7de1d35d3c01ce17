"""DKIM keys and keystores through the API: CRUD, validation, roles, tenant isolation,
secrets that never come back, and keystores in use."""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from mailgate.services.context import Context
from tests.config.helpers import create_server, field_names, new_tenant, token_for
from tests.conftest import ADMIN
from tests.delivery.test_signing import Pki, make_pki

T = "/api/v1/tenants/acme"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def acme(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await new_tenant(client)
    return client


def keystore_body(pki: Pki, password: str = "p12-pass", **extra: Any) -> dict[str, Any]:
    content = base64.b64encode(pki.pkcs12(password)).decode()
    return {"name": "billing", "kind": "pkcs12", "content": content, "password": password, **extra}


# DKIM keys ------------------------------------------------------------------------------


async def test_dkim_key_lifecycle(acme: httpx.AsyncClient) -> None:
    r = await acme.post(
        f"{T}/dkim-keys", json={"domain": "Acme.Example.", "selector": "s2024"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["domain"] == "acme.example" and key["selector"] == "s2024"
    assert key["algorithm"] == "rsa" and key["bits"] == 2048
    record = key["dns_record"]
    assert record["name"] == "s2024._domainkey.acme.example" and record["type"] == "TXT"
    assert record["value"].startswith("v=DKIM1; k=rsa; p=")
    assert "".join(record["strings"]) == record["value"]
    public = load_der_public_key(base64.b64decode(record["value"].split("p=", 1)[1]))
    assert public.key_size == 2048  # type: ignore[union-attr]
    assert "private" not in r.text.lower()
    listed = (await acme.get(f"{T}/dkim-keys", headers=ADMIN)).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert (await acme.get(f"{T}/dkim-keys/{key['id']}", headers=ADMIN)).json() == key
    duplicate = await acme.post(
        f"{T}/dkim-keys", json={"domain": "acme.example", "selector": "s2024"}, headers=ADMIN
    )
    assert duplicate.status_code == 409 and field_names(duplicate) == ["selector"]
    assert (await acme.delete(f"{T}/dkim-keys/{key['id']}", headers=ADMIN)).status_code == 204
    assert (await acme.get(f"{T}/dkim-keys/{key['id']}", headers=ADMIN)).status_code == 404


async def test_ed25519_and_4096_bit_keys(acme: httpx.AsyncClient) -> None:
    r = await acme.post(
        f"{T}/dkim-keys",
        json={"domain": "acme.example", "selector": "ed", "algorithm": "ed25519"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["bits"] is None
    assert r.json()["dns_record"]["value"].startswith("v=DKIM1; k=ed25519; p=")
    r = await acme.post(
        f"{T}/dkim-keys",
        json={"domain": "acme.example", "selector": "big", "bits": 4096},
        headers=ADMIN,
    )
    assert r.status_code == 201 and r.json()["bits"] == 4096


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"domain": "acme.example", "selector": "s1", "bits": 1024}, "bits"),
        ({"domain": "acme.example", "selector": "s1", "bits": 8192}, "bits"),
        ({"domain": "not a domain", "selector": "s1"}, "domain"),
        ({"domain": "acme.example", "selector": "bad selector"}, "selector"),
        ({"domain": "acme.example", "selector": "-s"}, "selector"),
        ({"domain": "acme.example", "selector": "s1", "algorithm": "dsa"}, "algorithm"),
        ({"domain": "acme.example", "selector": "s1", "private_key": "x"}, "private_key"),
    ],
)
async def test_dkim_key_validation(
    acme: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await acme.post(f"{T}/dkim-keys", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in field_names(r)


# Keystores ------------------------------------------------------------------------------


async def test_pkcs12_keystore_lifecycle(acme: httpx.AsyncClient, pki: Pki) -> None:
    r = await acme.post(f"{T}/keystores", json=keystore_body(pki), headers=ADMIN)
    assert r.status_code == 201, r.text
    store = r.json()
    assert store["name"] == "billing" and store["kind"] == "pkcs12"
    assert [a["alias"] for a in store["aliases"]] == ["billing"]
    assert store["aliases"][0]["subject"] == "CN=Acme Billing"
    assert store["not_after"] == store["aliases"][0]["not_after"] is not None
    assert "content" not in store and "password" not in store
    assert (await acme.get(f"{T}/keystores/{store['id']}", headers=ADMIN)).json() == store
    listed = (await acme.get(f"{T}/keystores", headers=ADMIN)).json()["items"]
    assert [k["id"] for k in listed] == [store["id"]]
    again = await acme.post(f"{T}/keystores", json=keystore_body(pki), headers=ADMIN)
    assert again.status_code == 409 and field_names(again) == ["name"]
    assert (await acme.delete(f"{T}/keystores/{store['id']}", headers=ADMIN)).status_code == 204
    assert (await acme.get(f"{T}/keystores/{store['id']}", headers=ADMIN)).status_code == 404


async def test_ca_keystore(acme: httpx.AsyncClient, pki: Pki) -> None:
    content = base64.b64encode(pki.ca_pem() * 2).decode()
    r = await acme.post(
        f"{T}/keystores", json={"name": "ca", "kind": "ca", "content": content}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    assert [a["subject"] for a in r.json()["aliases"]] == ["CN=Acme Test CA"] * 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"password": "wrong"}, "password"),
        ({"content": base64.b64encode(b"not a keystore").decode()}, "content"),
        ({"content": "%%% not base64 %%%"}, "content"),
        (
            {"kind": "ca", "content": base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()},
            "content",
        ),
        ({"kind": "jks"}, "kind"),
        ({"name": ""}, "name"),
    ],
)
async def test_keystore_validation(
    acme: httpx.AsyncClient, pki: Pki, change: dict[str, Any], field: str
) -> None:
    r = await acme.post(f"{T}/keystores", json={**keystore_body(pki), **change}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == [field]


async def test_account_smime_must_name_a_signing_keystore_and_alias(
    acme: httpx.AsyncClient, pki: Pki
) -> None:
    server = await create_server(acme, "acme")
    store = (await acme.post(f"{T}/keystores", json=keystore_body(pki), headers=ADMIN)).json()
    ca_content = base64.b64encode(pki.ca_pem()).decode()
    ca = await acme.post(
        f"{T}/keystores", json={"name": "ca", "kind": "ca", "content": ca_content}, headers=ADMIN
    )
    account = {"address": "billing@acme.example", "display_name": "Billing"}
    account["mail_server_id"] = server["id"]
    for smime, field in [
        ({"keystore_id": "01nope"}, "smime.keystore_id"),
        ({"keystore_id": ca.json()["id"]}, "smime.keystore_id"),
        ({"keystore_id": store["id"], "alias": "someone"}, "smime.alias"),
    ]:
        r = await acme.post(f"{T}/email-accounts", json={**account, "smime": smime}, headers=ADMIN)
        assert r.status_code == 422 and field_names(r) == [field], r.text
    smime = {"keystore_id": store["id"], "alias": "BILLING"}
    r = await acme.post(f"{T}/email-accounts", json={**account, "smime": smime}, headers=ADMIN)
    assert r.status_code == 201, r.text
    account_id = r.json()["id"]
    # In use: 409 naming the account; free again once the account stops signing with it.
    busy = await acme.delete(f"{T}/keystores/{store['id']}", headers=ADMIN)
    assert busy.status_code == 409 and "billing@acme.example" in busy.json()["detail"]
    bad_patch = await acme.patch(
        f"{T}/email-accounts/{account_id}",
        json={"smime": {"keystore_id": store["id"], "alias": "other"}},
        headers=ADMIN,
    )
    assert bad_patch.status_code == 422 and field_names(bad_patch) == ["smime.alias"]
    r = await acme.patch(f"{T}/email-accounts/{account_id}", json={"smime": None}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["smime"] is None
    assert (await acme.delete(f"{T}/keystores/{store['id']}", headers=ADMIN)).status_code == 204


# Roles, tenants, secrets ----------------------------------------------------------------


async def test_roles_and_tenant_isolation(acme: httpx.AsyncClient, pki: Pki) -> None:
    key = await acme.post(
        f"{T}/dkim-keys",
        json={"domain": "acme.example", "selector": "s1", "algorithm": "ed25519"},
        headers=ADMIN,
    )
    store = await acme.post(f"{T}/keystores", json=keystore_body(pki), headers=ADMIN)
    paths = [f"{T}/dkim-keys/{key.json()['id']}", f"{T}/keystores/{store.json()['id']}"]
    new_key = {"domain": "acme.example", "selector": "s9", "algorithm": "ed25519"}
    for role in ("viewer", "developer"):
        headers = await token_for(acme, "acme", role)
        for path in paths:
            assert (await acme.get(path, headers=headers)).status_code == 200
            assert (await acme.delete(path, headers=headers)).status_code == 403
        r = await acme.post(f"{T}/dkim-keys", json=new_key, headers=headers)
        assert r.status_code == 403
        r = await acme.post(f"{T}/keystores", json=keystore_body(pki), headers=headers)
        assert r.status_code == 403
    sender = await token_for(acme, "acme", "sender")
    assert (await acme.get(f"{T}/dkim-keys", headers=sender)).status_code == 403
    admin = await token_for(acme, "acme", "admin")
    r = await acme.post(f"{T}/dkim-keys", json=new_key, headers=admin)
    assert r.status_code == 201
    await new_tenant(acme, "other")
    other = await token_for(acme, "other", "owner")
    for path in paths:
        assert (await acme.get(path, headers=other)).status_code == 404
        assert (await acme.delete(path, headers=other)).status_code == 404
        # The id is unknown in the other tenant, even through its own URL.
        foreign = path.replace("/acme/", "/other/")
        assert (await acme.get(foreign, headers=other)).status_code == 404
    assert (await acme.get(f"{T}/dkim-keys", headers=other)).status_code == 404


async def test_secrets_never_come_back(
    acme: httpx.AsyncClient, ctx: Context, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = f"canary-{secrets.token_hex(12)}"
    body = keystore_body(pki, password)
    bodies: list[bytes] = []
    r = await acme.post(f"{T}/keystores", json=body, headers=ADMIN)
    assert r.status_code == 201
    bodies.append(r.content)
    r = await acme.post(
        f"{T}/dkim-keys", json={"domain": "acme.example", "selector": "s1"}, headers=ADMIN
    )
    bodies.append(r.content)
    for path in ("keystores", "dkim-keys", "audit"):
        bodies.append((await acme.get(f"{T}/{path}", headers=ADMIN)).content)
    audit = (await acme.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    actions = {entry["action"] for entry in audit}
    assert {"keystore.create", "dkim_key.create"} <= actions
    everything = b"\n".join(bodies) + caplog.text.encode()
    assert password.encode() not in everything
    assert body["content"][:40].encode() not in everything
    assert b"PRIVATE KEY" not in everything
    # At rest too: the keystore and the private key are only stored sealed.
    async with ctx.db.read() as tx:
        rows = [
            value
            for table in ("keystores", "dkim_keys")
            for row in await tx.exec_driver_sql(f"SELECT * FROM {table}")
            for value in row
        ]
    stored = b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in rows)
    assert password.encode() not in stored and b"PRIVATE KEY" not in stored
    assert body["content"][:40].encode() not in stored
