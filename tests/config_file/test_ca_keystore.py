"""The configuration file names the ``ca`` keystore a server or inbox trusts
(``ca_keystore``): applied through the services, exported by name, round trip unchanged."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mailgate.domain.roles import Permission
from mailgate.services import servers, signing
from mailgate.services.auth import authorize
from mailgate.services.config_export import export_document
from mailgate.services.config_file import ConfigFileError
from mailgate.services.context import Context
from mailgate.services.doctor import examine
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import KeystoreRepo
from tests.config_file.helpers import CLI, apply_doc, doc, written
from tests.support.tls import TestCA


async def _upload(ctx: Context, name: str, pem: str) -> None:
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)
    content = base64.b64encode(pem.encode()).decode()
    await signing.create_keystore(ctx, caller, {"name": name, "kind": "ca", "content": content})


async def _naming_corp_ca(ctx: Context, tmp_path: Path) -> dict[str, Any]:
    """Applies the demo file and uploads ``corp-ca``; returns the file with the relay and the
    inbox naming it, not applied yet."""
    await apply_doc(ctx, doc())
    await _upload(ctx, "corp-ca", TestCA(tmp_path / "pki").ca_pem)
    document = doc()
    acme = document["tenants"]["acme"]
    acme["mail_servers"]["relay"]["ca_keystore"] = "corp-ca"
    acme["email_accounts"]["noreply@acme.example"]["imap"]["ca_keystore"] = "corp-ca"
    return document


async def test_servers_and_inboxes_name_a_keystore_and_export_it(
    ctx: Context, tmp_path: Path
) -> None:
    document = await _naming_corp_ca(ctx, tmp_path)
    changes = written(await apply_doc(ctx, document))
    assert sorted((c.name, c.fields) for c in changes) == [
        ("noreply@acme.example", ("imap",)),
        ("relay", ("ca_keystore",)),
    ]
    exported = (await export_document(ctx, CLI))["tenants"]["acme"]
    assert exported["mail_servers"]["relay"]["ca_keystore"] == "corp-ca"
    assert "ca_certificates" not in exported["mail_servers"]["relay"]
    assert exported["email_accounts"]["noreply@acme.example"]["imap"]["ca_keystore"] == "corp-ca"
    assert "ca_keystore" not in exported["mail_servers"]["backup"]
    # The file as written applies as it is, and changes nothing.
    assert written(await apply_doc(ctx, document)) == []


async def test_a_wrong_reference_stops_at_its_path(ctx: Context, tmp_path: Path) -> None:
    await apply_doc(ctx, doc())
    pem = TestCA(tmp_path / "pki").ca_pem
    await _upload(ctx, "corp-ca", pem)
    cases = [
        ("relay", {"ca_keystore": "missing"}, "no keystore named 'missing'"),
        ("relay", {"ca_keystore": "corp-ca", "ca_certificates": pem}, "not both"),
    ]
    for server, fields, message in cases:
        document = doc()
        document["tenants"]["acme"]["mail_servers"][server].update(fields)
        with pytest.raises(ConfigFileError) as caught:
            await apply_doc(ctx, document)
        assert caught.value.path == f"tenants.acme.mail_servers.{server}.ca_keystore"
        assert message in caught.value.detail
    document = doc()
    imap = document["tenants"]["acme"]["email_accounts"]["noreply@acme.example"]["imap"]
    imap["ca_keystore"] = "missing"
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, document)
    assert caught.value.path == "tenants.acme.email_accounts.noreply@acme.example.imap.ca_keystore"


async def test_doctor_reports_a_reference_to_a_keystore_that_is_gone(
    ctx: Context, tmp_path: Path
) -> None:
    document = await _naming_corp_ca(ctx, tmp_path)
    await apply_doc(ctx, document)
    assert [f for f in await examine(ctx) if f.check == "servers"] == []
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)
    async with ctx.db.transaction() as tx:
        # Removed behind the service's back (the API refuses while it is named).
        repo = KeystoreRepo(tx, ctx.box, caller.tenant_id)
        found = await repo.find_by_name("corp-ca")
        assert found is not None
        await repo.delete(found)
    findings = [f for f in await examine(ctx) if f.check == "servers"]
    assert [f.subject.split(" (")[0] for f in findings] == [
        "tenant acme, mail server 'relay'",
        "tenant acme, inbox of noreply@acme.example",
    ]
    assert all("no ca keystore named 'corp-ca'" in f.problem for f in findings)
    assert "POST /api/v1/tenants/acme/keystores" in findings[0].fix
    assert "imap.ca_keystore" in findings[1].fix


async def test_doctor_reports_ca_certificates_that_do_not_load(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)
    relay = next(s for s in await servers.list_servers(ctx, caller) if s.name == "relay")
    async with ctx.db.transaction() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        stored = await repo.secrets(relay.id)
        broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        await repo.update(relay, {"ca_certificates": broken}, stored)
    (finding,) = [f for f in await examine(ctx) if f.check == "servers"]
    assert finding.subject.startswith("tenant acme, mail server 'relay'")
    assert finding.problem.startswith("cannot build its engine")
