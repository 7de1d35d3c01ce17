"""The demo tenant that ``make run`` starts with: every stage on the capture server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mailgate.domain.roles import Principal, PrincipalKind
from mailgate.errors import NotFound
from mailgate.services import accounts, apps, servers, tenants
from mailgate.services.auth import INSTANCE_ADMIN_ROLE
from mailgate.services.context import Caller, Context
from mailgate.storage import members
from mailgate.storage import tenants as tenant_store
from mailgate.storage.files import write_private_file

DEMO_SLUG = "demo"
DEMO_SENDER = "noreply@demo.mailgate.test"
DEMO_TOKEN_NAME = "demo-owner"  # noqa: S105 - a label, not a secret
DEMO_ADMIN_TOKEN_NAME = "demo-instance-admin"  # noqa: S105 - a label, not a secret
DEMO_TOKEN_FILE = "demo-tokens.json"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True)
class Demo:
    tenant: str
    sender: str
    token: str
    admin_token: str


async def ensure_demo(ctx: Context, *, token_file: Path | None = None) -> Demo:
    """Create the demo tenant once, and its owner and instance-admin tokens.

    With ``token_file`` (``serve --demo`` passes ``<data dir>/demo-tokens.json``, mode 0600)
    the tokens survive restarts: they are read back while they still work, so a token
    printed once keeps working. Without it, every call issues fresh tokens.
    """
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
    saved = await _saved_tokens(ctx, tenant.id, token_file)
    if saved is not None:
        token, admin_token = saved
    else:
        token, admin_token = await _issue_tokens(ctx, tenant.id)
        if token_file is not None:
            write_private_file(
                token_file,
                json.dumps({"tenant": tenant.slug, "token": token, "admin_token": admin_token})
                + "\n",
            )
    return Demo(tenant=tenant.slug, sender=DEMO_SENDER, token=token, admin_token=admin_token)


async def _issue_tokens(ctx: Context, tenant_id: str) -> tuple[str, str]:
    """New demo owner and instance-admin tokens; the previous ones are revoked."""
    async with ctx.db.transaction() as tx:
        await members.delete_tokens_named(tx, tenant_id, DEMO_TOKEN_NAME)
        _, token = await members.create_token(
            tx, tenant_id=tenant_id, name=DEMO_TOKEN_NAME, role="owner", app_id=None
        )
        await members.delete_tokens_named(tx, None, DEMO_ADMIN_TOKEN_NAME)
        _, admin_token = await members.create_token(
            tx, tenant_id=None, name=DEMO_ADMIN_TOKEN_NAME, role=INSTANCE_ADMIN_ROLE, app_id=None
        )
    return token, admin_token


async def _saved_tokens(
    ctx: Context, tenant_id: str, token_file: Path | None
) -> tuple[str, str] | None:
    """The tokens of the last start, when the file has them and both still open the API.

    A token revoked since (through the API, or a database reset) makes both new.
    """
    pair = _read_token_file(token_file) if token_file is not None else None
    if pair is None:
        return None
    token, admin_token = pair
    async with ctx.db.read() as tx:
        owner = await members.find_token(tx, token)
        admin = await members.find_token(tx, admin_token)
    if (
        owner is None
        or owner.tenant_id != tenant_id
        or owner.name != DEMO_TOKEN_NAME
        or admin is None
        or admin.tenant_id is not None
        or admin.name != DEMO_ADMIN_TOKEN_NAME
    ):
        return None
    return token, admin_token


def _read_token_file(path: Path) -> tuple[str, str] | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["token"]), str(saved["admin_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
