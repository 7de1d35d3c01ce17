"""Configuration files carry an inbox's sign-in (auth, oauth with secret references) and CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailgate.services import accounts
from mailgate.services.config_export import export_document
from mailgate.services.context import Context
from mailgate.settings import Settings
from tests.config_file.helpers import CANARY, CLI, ENV, apply_doc, doc, written
from tests.config_file.test_apply import _caller, second_database
from tests.support.tls import TestCA

ADDRESS = "noreply@acme.example"
SECRET_ENV = "MAILGATE_SECRET_ACME_IMAP_OAUTH"


def oauth_doc(pem: str) -> dict[str, Any]:
    document = doc()
    imap = document["tenants"]["acme"]["email_accounts"][ADDRESS]["imap"]
    del imap["password"]
    imap.update(
        {
            "auth": "xoauth2",
            "ca_certificates": pem,
            "oauth": {
                "provider": "microsoft",
                "tenant_id": "acme.onmicrosoft.com",
                "client_id": "app-1",
                "client_secret": {"env": SECRET_ENV},
            },
        }
    )
    return document


async def test_an_oauth_inbox_round_trips_with_its_secret_as_a_reference(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    env = {**ENV, SECRET_ENV: CANARY}
    await apply_doc(ctx, oauth_doc(pem), env=env)
    stored = await accounts.get_account(ctx, await _caller(ctx), await _account_id(ctx))
    assert stored.imap is not None and stored.imap.auth == "xoauth2"
    assert "imap_oauth_client_secret" in stored.secrets_set

    assert written(await apply_doc(ctx, oauth_doc(pem), env=env)) == []
    exported = await export_document(ctx, CLI)
    imap = exported["tenants"]["acme"]["email_accounts"][ADDRESS]["imap"]
    assert imap["auth"] == "xoauth2" and imap["ca_certificates"] == pem
    secret_ref = imap["oauth"]["client_secret"]
    assert secret_ref == {
        "env": "MAILGATE_SECRET_ACME_NOREPLY_ACME_EXAMPLE_IMAP_OAUTH_CLIENT_SECRET"
    }
    assert CANARY not in repr(exported)

    async with second_database(settings, tmp_path) as fresh:
        refs = {
            exported["tenants"]["acme"]["mail_servers"]["relay"]["password"]["env"]: "x",
            exported["tenants"]["acme"]["mail_servers"]["backup"]["api_key"]["env"]: "SG.x",
            secret_ref["env"]: CANARY,
        }
        await apply_doc(fresh, exported, env=refs)
        assert await export_document(fresh, CLI) == exported


async def test_a_changed_client_secret_in_the_file_updates_the_inbox(
    ctx: Context, tmp_path: Path
) -> None:
    pem = TestCA(tmp_path / "pki").ca_pem
    await apply_doc(ctx, oauth_doc(pem), env={**ENV, SECRET_ENV: CANARY})

    changes = await apply_doc(ctx, oauth_doc(pem), env={**ENV, SECRET_ENV: "rotated-" + CANARY})

    (change,) = written(changes)
    assert change.fields == ("imap.oauth.client_secret",)


async def _account_id(ctx: Context) -> str:
    listed = await accounts.list_accounts(ctx, await _caller(ctx))
    return next(a.id for a in listed if a.address == ADDRESS)
