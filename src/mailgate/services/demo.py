"""The demo tenant that ``make run`` starts with: every stage on the capture server."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.domain.roles import Principal, PrincipalKind
from mailgate.errors import NotFound
from mailgate.services import accounts, apps, servers, tenants
from mailgate.services.auth import INSTANCE_ADMIN_ROLE
from mailgate.services.context import Caller, Context
from mailgate.storage import members
from mailgate.storage import tenants as tenant_store

DEMO_SLUG = "demo"
DEMO_SENDER = "noreply@demo.mailgate.test"
DEMO_TOKEN_NAME = "demo-owner"  # noqa: S105 - a label, not a secret
DEMO_ADMIN_TOKEN_NAME = "demo-instance-admin"  # noqa: S105 - a label, not a secret


@dataclass(frozen=True, slots=True)
class Demo:
    tenant: str
    sender: str
    token: str
    admin_token: str


async def ensure_demo(ctx: Context) -> Demo:
    """Create the demo tenant once; issue a fresh owner token on every call."""
    admin = Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor="mailgate-demo")
    try:
        async with ctx.db.read() as tx:
            tenant = await tenant_store.get_tenant(tx, DEMO_SLUG)
        caller = Caller(admin, tenant)
    except NotFound:
        tenant = await tenants.create_tenant(ctx, admin, slug=DEMO_SLUG, name="Demo tenant")
        caller = Caller(admin, tenant)
        server = await servers.create_server(
            ctx,
            caller,
            {
                "name": "Capture",
                "engine": "capture",
                "stages": ["development", "test", "production"],
                "is_default": True,
            },
        )
        await accounts.create_account(
            ctx,
            caller,
            {
                "address": DEMO_SENDER,
                "display_name": "Mailgate demo",
                "mail_server_id": server.id,
                "is_default": True,
            },
        )
        await apps.create_app(ctx, caller, "demo-app")
    async with ctx.db.transaction() as tx:
        await members.delete_tokens_named(tx, tenant.id, DEMO_TOKEN_NAME)
        _, token = await members.create_token(
            tx, tenant_id=tenant.id, name=DEMO_TOKEN_NAME, role="owner", app_id=None
        )
        await members.delete_tokens_named(tx, None, DEMO_ADMIN_TOKEN_NAME)
        _, admin_token = await members.create_token(
            tx, tenant_id=None, name=DEMO_ADMIN_TOKEN_NAME, role=INSTANCE_ADMIN_ROLE, app_id=None
        )
    return Demo(tenant=tenant.slug, sender=DEMO_SENDER, token=token, admin_token=admin_token)
