"""The doctor's checks in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

from mailgate.domain.roles import Permission
from mailgate.services import servers
from mailgate.services.auth import authorize
from mailgate.services.context import Context
from mailgate.services.doctor import examine
from mailgate.storage.servers import ServerRepo
from tests.config_file.helpers import CLI, apply_doc, doc


async def test_a_stored_server_with_invalid_options_is_found(ctx: Context) -> None:
    await apply_doc(ctx, doc())
    before = [f for f in await examine(ctx) if f.check == "servers"]
    assert before == []
    caller = await authorize(ctx, CLI, "acme", Permission.MANAGE_EMAIL_CONFIGURATIONS)
    relay = next(s for s in await servers.list_servers(ctx, caller) if s.name == "relay")
    async with ctx.db.transaction() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        stored = await repo.secrets(relay.id)
        # A row saved before options were checked: written without the service's rules.
        await repo.update(relay, {"options": {"disable_auth_plain": "maybe"}}, stored)
    found = [f for f in await examine(ctx) if f.check == "servers"]
    assert [(f.subject.split(" (")[0], f.problem) for f in found] == [
        ("tenant acme, mail server 'relay'", "options.disable_auth_plain: must be true or false")
    ]
    assert "PATCH /api/v1/tenants/acme/mail-servers/" in found[0].fix
