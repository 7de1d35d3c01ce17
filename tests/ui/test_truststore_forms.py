"""The server and account dialogs offer the tenant's ``ca`` keystores to trust by name."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.delivery.test_signing import make_pki
from tests.support.tls import TestCA
from tests.ui.test_forms import SMTP, _owner, _servers, field_error

T = "/api/v1/tenants/acme"


async def _keystores(api: httpx.AsyncClient, tmp_path: Path) -> str:
    pem = TestCA(tmp_path / "pki").ca_pem
    for name, kind in (("corp-ca", "ca"), ("partner-ca", "ca")):
        body = {"name": name, "kind": kind, "content": base64.b64encode(pem.encode()).decode()}
        r = await api.post(f"{T}/keystores", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
    return pem


async def _owner_with_server(
    browser_factory: Any, api: httpx.AsyncClient, tmp_path: Path
) -> tuple[Any, dict[str, Any]]:
    """The owner's browser, the two CA keystores and one SMTP server made in its form."""
    b = await _owner(browser_factory, api)
    await _keystores(api, tmp_path)
    assert (await b.post("/t/acme/settings/servers/new", SMTP)).status_code == 303
    (server,) = await _servers(api)
    return b, server


def _options(html: str, field: str) -> list[str]:
    select = re.search(rf'<select id="[^"]*" name="{re.escape(field)}".*?</select>', html, re.S)
    assert select, f"no select {field}"
    return re.findall(r'<option value="([^"]*)"', select.group(0))


def _selected(html: str, field: str) -> str | None:
    select = re.search(rf'<select id="[^"]*" name="{re.escape(field)}".*?</select>', html, re.S)
    assert select
    found = re.search(r'<option value="([^"]*)" selected', select.group(0))
    return found.group(1) if found else None


async def test_the_server_dialog_trusts_a_ca_keystore_by_name(
    browser_factory: Any, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    b = await _owner(browser_factory, api)
    pem = await _keystores(api, tmp_path)
    form = await b.get("/t/acme/settings/servers/new")
    assert _options(form.text, "ca_keystore") == ["", "corp-ca", "partner-ca"]
    # Both ways at once: the service's 422 shows under the select.
    r = await b.post(
        "/t/acme/settings/servers/new", {**SMTP, "ca_certificates": pem, "ca_keystore": "corp-ca"}
    )
    assert r.status_code == 422
    assert "not both" in field_error(r.text, "ca_keystore")
    assert _selected(r.text, "ca_keystore") == "corp-ca"
    r = await b.post("/t/acme/settings/servers/new", {**SMTP, "ca_keystore": "corp-ca"})
    assert r.status_code == 303, r.text
    (server,) = await _servers(api)
    assert server["ca_keystore"] == "corp-ca"
    edit = f"/t/acme/settings/servers/{server['id']}/edit"
    assert _selected((await b.get(edit)).text, "ca_keystore") == "corp-ca"
    # Another keystore is another trust: the password must be typed again.
    changed = {**SMTP, "ca_keystore": "partner-ca", "password": ""}
    r = await b.post(edit, changed)
    assert r.status_code == 422
    assert "ca_keystore" in field_error(r.text, "password")
    r = await b.post(edit, {**changed, "password": SMTP["password"]})
    assert r.status_code == 303, r.text
    assert (await _servers(api))[0]["ca_keystore"] == "partner-ca"


async def test_the_account_dialog_trusts_a_ca_keystore_for_its_inbox(
    browser_factory: Any, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    b, server = await _owner_with_server(browser_factory, api, tmp_path)
    account = {
        "address": "box@acme.test",
        "display_name": "Box",
        "mail_server_id": server["id"],
        "imap.host": "imap.acme.test",
        "imap.port": "993",
        "imap.security": "tls",
        "imap.auth": "password",
        "imap.password": "imap-Secret-1",
        "imap.folder": "INBOX",
    }
    form = await b.get("/t/acme/settings/accounts/new")
    assert _options(form.text, "imap.ca_keystore") == ["", "corp-ca", "partner-ca"]
    r = await b.post("/t/acme/settings/accounts/new", {**account, "imap.ca_keystore": "missing-ca"})
    assert r.status_code == 422
    assert "no keystore named 'missing-ca'" in field_error(r.text, "imap.ca_keystore")
    r = await b.post("/t/acme/settings/accounts/new", {**account, "imap.ca_keystore": "corp-ca"})
    assert r.status_code == 303, r.text
    (saved,) = (await api.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"]
    assert saved["imap"]["ca_keystore"] == "corp-ca"
    edit = f"/t/acme/settings/accounts/{saved['id']}/edit"
    assert _selected((await b.get(edit)).text, "imap.ca_keystore") == "corp-ca"
    # "None" clears it (with the password again: the inbox's trust changes).
    r = await b.post(edit, {**account, "imap.ca_keystore": ""})
    assert r.status_code == 303, r.text
    (saved,) = (await api.get(f"{T}/email-accounts", headers=ADMIN)).json()["items"]
    assert saved["imap"]["ca_keystore"] is None


async def test_the_keystores_page_replaces_a_ca_and_refuses_to_delete_one_in_use(
    browser_factory: Any, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    b = await _owner(browser_factory, api)
    await _keystores(api, tmp_path)
    assert (
        await b.post("/t/acme/settings/servers/new", {**SMTP, "ca_keystore": "corp-ca"})
    ).status_code == 303
    listed = (await api.get(f"{T}/keystores", headers=ADMIN)).json()["items"]
    stores = {k["name"]: k for k in listed}
    corp = stores["corp-ca"]["id"]
    page = await b.get("/t/acme/keystores")
    assert f'action="/t/acme/keystores/{corp}/replace"' in page.text
    new = TestCA(tmp_path / "new", name="Renewed CA").ca_pem.encode()
    r = await b.client.post(
        f"/t/acme/keystores/{corp}/replace",
        data={"csrf_token": b.csrf},
        files={"file": ("ca.pem", new, "application/x-pem-file")},
    )
    assert r.status_code == 303, r.text
    got = (await api.get(f"{T}/keystores/{corp}", headers=ADMIN)).json()
    assert [a["alias"] for a in got["aliases"]] == ["Renewed CA"]
    assert "Renewed CA" in (await b.get("/t/acme/keystores")).text
    bad = await b.client.post(
        f"/t/acme/keystores/{corp}/replace",
        data={"csrf_token": b.csrf},
        files={"file": ("ca.pem", b"not PEM", "application/x-pem-file")},
    )
    assert bad.status_code == 422 and "were not replaced" in bad.text
    refused = await b.post(f"/t/acme/keystores/{corp}/delete")
    assert refused.status_code == 409
    assert "mail server Relay" in refused.text
    assert (await api.get(f"{T}/keystores/{corp}", headers=ADMIN)).status_code == 200
    unused = await b.post(f"/t/acme/keystores/{stores['partner-ca']['id']}/delete")
    assert unused.status_code == 303


async def test_the_keystores_page_names_what_uses_each_keystore(
    browser_factory: Any, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    b, server = await _owner_with_server(browser_factory, api, tmp_path)
    pki = make_pki()
    body = {
        "name": "signing",
        "kind": "pkcs12",
        "content": base64.b64encode(pki.pkcs12("p12-pass")).decode(),
        "password": "p12-pass",
    }
    store = (await api.post(f"{T}/keystores", json=body, headers=ADMIN)).json()
    for address, extra in [
        (
            "box@acme.test",
            {"imap": {"host": "imap.acme.test", "username": "box", "ca_keystore": "corp-ca"}},
        ),
        ("signer@acme.test", {"smime": {"keystore_id": store["id"]}}),
    ]:
        account = {"address": address, "display_name": address, "mail_server_id": server["id"]}
        r = await api.post(f"{T}/email-accounts", json={**account, **extra}, headers=ADMIN)
        assert r.status_code == 201, r.text

    page = (await b.get("/t/acme/keystores")).text

    def used_by(name: str) -> list[str]:
        """The words of the keystore's "Used by"."""
        card = page.split(f'data-keystore="{name}">', 1)[1]
        cell = card.split('class="used-by">', 1)[1].split("</dd>", 1)[0]
        return re.sub(r"<[^>]+>", " ", cell).split()

    assert used_by("corp-ca") == ["Inbox", "of", "box@acme.test"]
    assert used_by("partner-ca") == ["nothing"]
    assert used_by("signing") == ["Signing", "for", "signer@acme.test"]

    refused = await b.post(f"/t/acme/keystores/{store['id']}/delete")
    assert refused.status_code == 409
    assert (
        "signing was not deleted: the email account signer@acme.test signs mail with it."
        in refused.text
    )
    corp = next(
        k
        for k in (await api.get(f"{T}/keystores", headers=ADMIN)).json()["items"]
        if k["name"] == "corp-ca"
    )
    refused = await b.post(f"/t/acme/keystores/{corp['id']}/delete")
    assert refused.status_code == 409
    assert "corp-ca was not deleted: the inbox of box@acme.test trusts it." in refused.text
    assert '<li class="card refused" data-keystore="corp-ca">' in refused.text
