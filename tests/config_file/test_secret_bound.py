"""Applying a file: a stored secret never follows an edited endpoint."""

from __future__ import annotations

import pytest

from mailgate.domain.roles import Permission
from mailgate.services import servers
from mailgate.services.auth import authorize
from mailgate.services.config_file import ConfigFileError
from mailgate.services.context import Context
from mailgate.storage.servers import ServerRepo
from tests.config_file.helpers import CLI, ENV, apply_doc, doc, written

RELAY = "tenants.acme.mail_servers.relay"
BACKUP = "tenants.acme.mail_servers.backup"


async def _secrets(ctx: Context, name: str) -> dict[str, str]:
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)
    server = next(s for s in await servers.list_servers(ctx, caller) if s.name == name)
    async with ctx.db.read() as tx:
        return await ServerRepo(tx, ctx.box, caller.tenant_id).secrets(server.id)


@pytest.mark.parametrize(
    "change", [{"verify_certificate": False}, {"ca_certificates": "-----BEGIN X-----\n"}]
)
async def test_new_tls_trust_without_the_password_is_refused(
    ctx: Context, change: dict[str, object]
) -> None:
    await apply_doc(ctx, doc())
    edited = doc()
    relay = edited["tenants"]["acme"]["mail_servers"]["relay"]
    relay.update(change)
    del relay["password"]
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, edited)
    assert caught.value.path == f"{RELAY}.password"
    assert "requires the password again" in caught.value.detail


async def test_a_new_api_base_url_sends_the_files_key_again(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    edited = doc()
    edited["tenants"]["acme"]["mail_servers"]["backup"]["api_base_url"] = "http://127.0.0.1:8/v3"
    changes = written(await apply_doc(ctx, edited))
    assert [(c.name, c.fields) for c in changes] == [("backup", ("api_base_url",))]
    assert await _secrets(ctx, "backup") == {"api_key": ENV["MAILGATE_SECRET_ACME_BACKUP_API_KEY"]}
    del edited["tenants"]["acme"]["mail_servers"]["backup"]["api_key"]
    edited["tenants"]["acme"]["mail_servers"]["backup"]["api_base_url"] = "http://127.0.0.1:7/v3"
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, edited)
    assert caught.value.path == f"{BACKUP}.api_key"


async def test_imap_move_without_the_password_is_refused(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    edited = doc()
    account = edited["tenants"]["acme"]["email_accounts"]["noreply@acme.example"]
    account["imap"]["host"] = "imap2.acme.example"
    del account["imap"]["password"]
    with pytest.raises(ConfigFileError) as caught:
        await apply_doc(ctx, edited)
    assert caught.value.path.endswith("imap.password")
