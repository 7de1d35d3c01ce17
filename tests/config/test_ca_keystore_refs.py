"""Servers and inboxes that name a ``ca`` keystore (``ca_keystore``): the 422s, the 409 on
deleting a keystore in use, the stored secret asked for again, replacing a keystore's
content, and the audit trail."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect

from mailgate.services.context import Context
from mailgate.storage import migrate
from tests.config.helpers import create_server, field_names, new_tenant, smtp_server
from tests.conftest import ADMIN
from tests.delivery.test_signing import Pki, make_pki
from tests.support.tls import TestCA

T = "/api/v1/tenants/acme"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
async def acme(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await new_tenant(client)
    return client


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


async def upload(client: httpx.AsyncClient, name: str, pem: str) -> dict[str, Any]:
    r = await client.post(
        f"{T}/keystores", json={"name": name, "kind": "ca", "content": b64(pem)}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def upload_signing(client: httpx.AsyncClient, pki: Pki) -> dict[str, Any]:
    """A ``pkcs12`` keystore named ``signing``: a keystore of the wrong kind for a CA."""
    r = await client.post(
        f"{T}/keystores",
        json={
            "name": "signing",
            "kind": "pkcs12",
            "content": b64(pki.pkcs12("pw")),
            "password": "pw",
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def inbox(**extra: Any) -> dict[str, Any]:
    return {"host": "imap.example.com", "username": "box", "password": "imap-Secret-1", **extra}


async def account(client: httpx.AsyncClient, server_id: str, **imap: Any) -> httpx.Response:
    return await client.post(
        f"{T}/email-accounts",
        json={
            "address": "box@acme.example",
            "display_name": "Box",
            "mail_server_id": server_id,
            "imap": inbox(**imap),
        },
        headers=ADMIN,
    )


async def test_a_server_names_a_ca_keystore_and_shows_it(
    acme: httpx.AsyncClient, ca: TestCA
) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    server = await create_server(acme, "acme", ca_keystore="corp-ca")
    assert server["ca_keystore"] == "corp-ca" and server["ca_certificates"] is None
    r = await acme.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)
    assert r.json()["ca_keystore"] == "corp-ca"
    # Clearing the reference (with the password again, see below) leaves the system store.
    r = await acme.patch(
        f"{T}/mail-servers/{server['id']}",
        json={"ca_keystore": None, "password": "s3cret-Passw0rd"},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert r.json()["ca_keystore"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ca_keystore": "missing"}, "no keystore named 'missing'"),
        ({"ca_keystore": "signing"}, "name a keystore of kind ca"),
        ({"ca_keystore": "corp-ca", "ca_certificates": "PEM"}, "not both"),
        ({"ca_keystore": "x" * 201}, "at most 200"),
    ],
)
async def test_server_reference_422s_name_the_field(
    acme: httpx.AsyncClient, ca: TestCA, pki: Pki, extra: dict[str, Any], message: str
) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    await upload_signing(acme, pki)
    r = await acme.post(f"{T}/mail-servers", json=smtp_server(**extra), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field_names(r) == ["ca_keystore"]
    assert message in r.json()["errors"][0]["message"]
    # The same rules on an edit, and for the unsaved settings of Test Connection.
    server = await create_server(acme, "acme", name="Edited")
    r = await acme.patch(
        f"{T}/mail-servers/{server['id']}",
        json={**extra, "password": "s3cret-Passw0rd"},
        headers=ADMIN,
    )
    assert r.status_code == 422 and field_names(r) == ["ca_keystore"], r.text


async def test_an_edit_naming_a_keystore_over_inline_pem_must_clear_the_pem(
    acme: httpx.AsyncClient, ca: TestCA
) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    server = await create_server(acme, "acme", ca_certificates=ca.ca_pem)
    url = f"{T}/mail-servers/{server['id']}"
    body = {"ca_keystore": "corp-ca", "password": "s3cret-Passw0rd"}
    r = await acme.patch(url, json=body, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["ca_keystore"], r.text
    r = await acme.patch(url, json={**body, "ca_certificates": None}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["ca_keystore"] == "corp-ca" and r.json()["ca_certificates"] is None


async def test_changing_the_reference_needs_the_stored_secret_again(
    acme: httpx.AsyncClient, ca: TestCA, tmp_path: Path
) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    await upload(acme, "other-ca", TestCA(tmp_path / "other").ca_pem)
    server = await create_server(acme, "acme", ca_keystore="corp-ca")
    url = f"{T}/mail-servers/{server['id']}"
    for change in ({"ca_keystore": "other-ca"}, {"ca_keystore": None}):
        r = await acme.patch(url, json=change, headers=ADMIN)
        assert r.status_code == 422 and field_names(r) == ["password"], r.text
        assert "ca_keystore" in r.json()["errors"][0]["message"]
    # Unsaved settings of Test Connection follow the same rule.
    r = await acme.post(
        f"{T}/mail-servers/test",
        json={**smtp_server(ca_keystore="other-ca"), "password": None, "server_id": server["id"]},
        headers=ADMIN,
    )
    assert r.status_code == 422 and field_names(r) == ["password"], r.text
    r = await acme.patch(
        url, json={"ca_keystore": "other-ca", "password": "s3cret-Passw0rd"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["ca_keystore"] == "other-ca", r.text


async def test_an_inbox_names_a_ca_keystore(acme: httpx.AsyncClient, ca: TestCA) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    server = await create_server(acme, "acme")
    r = await account(acme, server["id"], ca_keystore="missing")
    assert r.status_code == 422 and field_names(r) == ["imap.ca_keystore"], r.text
    r = await account(acme, server["id"], ca_keystore="corp-ca", ca_certificates=ca.ca_pem)
    assert r.status_code == 422 and field_names(r) == ["imap.ca_keystore"], r.text
    assert "not both" in r.json()["errors"][0]["message"]
    r = await account(acme, server["id"], ca_keystore="corp-ca")
    assert r.status_code == 201, r.text
    assert r.json()["imap"]["ca_keystore"] == "corp-ca"
    url = f"{T}/email-accounts/{r.json()['id']}"
    # An imap object that leaves the field out keeps it (an older client edits the folder).
    kept = inbox(folder="Archive")
    del kept["password"]
    r = await acme.patch(url, json={"imap": kept}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["imap"]["ca_keystore"] == "corp-ca", r.text
    # Trusting other certificates needs the password again.
    changed = {**kept, "ca_keystore": None, "ca_certificates": ca.ca_pem}
    r = await acme.patch(url, json={"imap": changed}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["imap.password"], r.text
    r = await acme.patch(url, json={"imap": {**changed, "password": "new-Secret-2"}}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["imap"]["ca_keystore"] is None, r.text


async def test_a_keystore_in_use_cannot_be_deleted(acme: httpx.AsyncClient, ca: TestCA) -> None:
    store = await upload(acme, "corp-ca", ca.ca_pem)
    one = await create_server(acme, "acme", name="one", ca_keystore="corp-ca")
    await create_server(acme, "acme", name="two", ca_keystore="corp-ca")
    assert (await account(acme, one["id"], ca_keystore="corp-ca")).status_code == 201
    url = f"{T}/keystores/{store['id']}"
    r = await acme.delete(url, headers=ADMIN)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["dependants"] == {
        "keystore_id": store["id"],
        "keystore_name": "corp-ca",
        "servers": ["one", "two"],
        "accounts": ["box@acme.example"],
    }
    assert field_names(r) == ["ca_keystore"]
    assert "one, two" in problem["detail"] and "box@acme.example" in problem["detail"]
    assert (await acme.get(url, headers=ADMIN)).status_code == 200
    # Once nothing names it, it goes.
    password = {"password": "s3cret-Passw0rd"}
    for server in (await acme.get(f"{T}/mail-servers", headers=ADMIN)).json()["items"]:
        r = await acme.patch(
            f"{T}/mail-servers/{server['id']}",
            json={"ca_keystore": None, **password},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
    accounts = (await acme.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"]
    r = await acme.patch(
        f"{T}/email-accounts/{accounts[0]['id']}",
        json={"imap": inbox(ca_keystore=None)},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert (await acme.delete(url, headers=ADMIN)).status_code == 204


async def test_replacing_a_ca_keystore(
    acme: httpx.AsyncClient, ca: TestCA, pki: Pki, tmp_path: Path
) -> None:
    store = await upload(acme, "corp-ca", ca.ca_pem)
    url = f"{T}/keystores/{store['id']}"
    other = TestCA(tmp_path / "other", name="Replacement CA")
    r = await acme.patch(url, json={"content": b64(other.ca_pem)}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "corp-ca" and r.json()["kind"] == "ca"
    assert [a["alias"] for a in r.json()["aliases"]] == ["Replacement CA"]
    r = await acme.patch(url, json={"content": b64("not a certificate")}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["content"], r.text
    r = await acme.patch(url, json={"content": b64(other.ca_pem), "name": "x"}, headers=ADMIN)
    assert r.status_code == 422 and field_names(r) == ["name"], r.text
    signing = await upload_signing(acme, pki)
    r = await acme.patch(
        f"{T}/keystores/{signing['id']}", json={"content": b64(ca.ca_pem)}, headers=ADMIN
    )
    assert r.status_code == 422 and field_names(r) == ["content"], r.text
    audit = (await acme.get(f"{T}/audit", headers=ADMIN)).json()["items"]
    updates = [e for e in audit if e["action"] == "keystore.update"]
    assert len(updates) == 1 and updates[0]["changes"] == ["content"]
    assert "BEGIN CERTIFICATE" not in str(audit)


async def test_migration_0012_adds_and_drops_the_server_column(
    acme: httpx.AsyncClient, ctx: Context, ca: TestCA
) -> None:
    await upload(acme, "corp-ca", ca.ca_pem)
    server = await create_server(acme, "acme", ca_keystore="corp-ca")

    async def run(action: str, revision: str) -> None:
        def step(sync_conn: Any) -> None:
            getattr(command, action)(migrate.alembic_config(sync_conn), revision)

        async with ctx.db.engine.begin() as conn:
            await conn.run_sync(step)

    async def columns() -> set[str]:
        def read(sync_conn: Any) -> set[str]:
            return {c["name"] for c in inspect(sync_conn).get_columns("mail_servers")}

        async with ctx.db.engine.connect() as conn:
            return await conn.run_sync(read)

    assert "ca_keystore" in await columns()
    await run("downgrade", "0011")
    assert "ca_keystore" not in await columns()
    await run("upgrade", "head")
    assert await migrate.current_revision(ctx.db) == migrate.head_revision()
    assert "ca_keystore" in await columns()
    r = await acme.get(f"{T}/mail-servers/{server['id']}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["ca_keystore"] is None
