"""One read of a tenant's routing configuration, shared by every message of a request."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.domain.model import App, EmailAccount
from mailgate.services.context import Context
from mailgate.storage import apps, tenants
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """Stages, apps, accounts and servers of one tenant at one moment."""

    stage_servers: dict[str, str | None]
    apps_by_name: dict[str, App]
    apps_by_id: dict[str, App]
    accounts_by_address: dict[str, EmailAccount]
    default_account: EmailAccount | None
    default_server: str | None
    server_ids: frozenset[str]


async def load_snapshot(ctx: Context, tenant_id: str) -> RoutingSnapshot:
    async with ctx.db.read() as tx:
        stage_list = await tenants.list_stages(tx, tenant_id)
        app_list = await apps.list_apps(tx, tenant_id)
        accounts = await AccountRepo(tx, ctx.box, tenant_id).list()
        servers = await ServerRepo(tx, ctx.box, tenant_id).list()
    return RoutingSnapshot(
        stage_servers={s.name: s.mail_server_id for s in stage_list},
        apps_by_name={a.name: a for a in app_list},
        apps_by_id={a.id: a for a in app_list},
        accounts_by_address={a.address.lower(): a for a in accounts},
        default_account=next((a for a in accounts if a.is_default), None),
        default_server=next((s.id for s in servers if s.is_default), None),
        server_ids=frozenset(s.id for s in servers),
    )
