"""``GET /tenants/{t}/routing``: the tenant's routes and routing problems, as of now."""

from __future__ import annotations

from mailgate.domain.routing_health import RoutingHealth, assess
from mailgate.services.context import Caller, Context
from mailgate.storage import messages as message_store
from mailgate.storage import tenants
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import DkimKeyRepo


async def routing_health(ctx: Context, caller: Caller) -> RoutingHealth:
    async with ctx.db.read() as tx:
        stages = await tenants.list_stages(tx, caller.tenant_id)
        accounts = await AccountRepo(tx, ctx.box, caller.tenant_id).list()
        servers = await ServerRepo(tx, ctx.box, caller.tenant_id).list()
        keys = await DkimKeyRepo(tx, ctx.box, caller.tenant_id).list()
        held = await message_store.held_by_server(tx, caller.tenant_id)
    return assess(
        stage_servers={s.name: s.mail_server_id for s in stages},
        accounts=accounts,
        servers=servers,
        held=held,
        dkim_domains={k.domain for k in keys},
    )
