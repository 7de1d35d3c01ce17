"""Mail servers, email accounts, apps and test lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from mailgate.domain.server_deletion import Reassignment
from mailgate.services import accounts as account_svc
from mailgate.services import apps as app_svc
from mailgate.services import servers as server_svc
from mailgate.web.api.account_schemas import EmailAccountOut
from mailgate.web.api.app_schemas import AppIn, AppOut, TestListBody, TestListOut
from mailgate.web.api.schemas import (
    EmailAccountIn,
    EmailAccountPatch,
    MailServerIn,
    MailServerOut,
    MailServerPatch,
    Page,
)
from mailgate.web.deps import CtxDep, Limit, ManageApps, ManageConfig, ViewConfig, page

router = APIRouter(prefix="/api/v1/tenants/{tenant}")


# Mail servers ---------------------------------------------------------------------------


@router.get("/mail-servers", tags=["mail servers"])
async def list_servers(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[MailServerOut]:
    items, nxt = page(await server_svc.list_servers(ctx, who), lambda s: s.id, limit, cursor)
    return Page(items=[MailServerOut.of(s) for s in items], next_cursor=nxt)


@router.post("/mail-servers", status_code=201, tags=["mail servers"])
async def create_server(body: MailServerIn, ctx: CtxDep, who: ManageConfig) -> MailServerOut:
    """Create a mail server. Secrets are write-only: responses say ``password_set``."""
    fields = body.model_dump(exclude_unset=True)
    fields.setdefault("name", body.name)
    return MailServerOut.of(await server_svc.create_server(ctx, who, fields))


@router.get("/mail-servers/{server_id}", tags=["mail servers"])
async def get_server(server_id: str, ctx: CtxDep, who: ViewConfig) -> MailServerOut:
    return MailServerOut.of(await server_svc.get_server(ctx, who, server_id))


@router.patch("/mail-servers/{server_id}", tags=["mail servers"])
async def update_server(
    server_id: str, body: MailServerPatch, ctx: CtxDep, who: ManageConfig
) -> MailServerOut:
    """Change the fields given; an omitted or blank secret keeps the stored one."""
    fields = body.model_dump(exclude_unset=True)
    return MailServerOut.of(await server_svc.update_server(ctx, who, server_id, fields))


@router.get("/mail-servers/{server_id}/dependants", tags=["mail servers"])
async def server_dependants(server_id: str, ctx: CtxDep, who: ViewConfig) -> dict[str, Any]:
    """What a delete would have to move: stages, accounts, the default flag, waiting mail
    (queued, deferred, held or being sent) and the servers that fall back to this one."""
    return (await server_svc.dependants(ctx, who, server_id)).as_dict()


#: A target server's id, or a keyword.
Target = Annotated[str | None, Query(max_length=64)]


@router.delete("/mail-servers/{server_id}", status_code=204, tags=["mail servers"])
async def delete_server(
    server_id: str,
    ctx: CtxDep,
    who: ManageConfig,
    stages_to: Target = None,
    accounts_to: Target = None,
    default_to: Target = None,
    mail_to: Target = None,
) -> Response:
    """Delete a server. When stages, accounts, the default flag or waiting mail depend on
    it, say where each goes (``stages_to``/``accounts_to``: a server id or ``none``;
    ``default_to``: a server id; ``mail_to``: a server id or ``reroute``); without that the
    answer is 409 listing the ``dependants``. Accounts left without a server cannot send."""
    plan = Reassignment(
        stages_to=stages_to, accounts_to=accounts_to, default_to=default_to, mail_to=mail_to
    )
    await server_svc.delete_server(ctx, who, server_id, plan)
    return Response(status_code=204)


# Email accounts -------------------------------------------------------------------------


@router.get("/email-accounts", tags=["email accounts"])
async def list_accounts(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[EmailAccountOut]:
    items, nxt = page(await account_svc.list_accounts(ctx, who), lambda a: a.id, limit, cursor)
    return Page(items=[EmailAccountOut.of(a) for a in items], next_cursor=nxt)


@router.post("/email-accounts", status_code=201, tags=["email accounts"])
async def create_account(body: EmailAccountIn, ctx: CtxDep, who: ManageConfig) -> EmailAccountOut:
    fields = body.model_dump(exclude_unset=True)
    return EmailAccountOut.of(await account_svc.create_account(ctx, who, fields))


@router.get("/email-accounts/{account_id}", tags=["email accounts"])
async def get_account(account_id: str, ctx: CtxDep, who: ViewConfig) -> EmailAccountOut:
    return EmailAccountOut.of(await account_svc.get_account(ctx, who, account_id))


@router.patch("/email-accounts/{account_id}", tags=["email accounts"])
async def update_account(
    account_id: str, body: EmailAccountPatch, ctx: CtxDep, who: ManageConfig
) -> EmailAccountOut:
    fields = body.model_dump(exclude_unset=True)
    return EmailAccountOut.of(await account_svc.update_account(ctx, who, account_id, fields))


@router.delete("/email-accounts/{account_id}", status_code=204, tags=["email accounts"])
async def delete_account(account_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    await account_svc.delete_account(ctx, who, account_id)
    return Response(status_code=204)


# Apps and test lists --------------------------------------------------------------------


@router.get("/apps", tags=["apps"])
async def list_apps(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[AppOut]:
    items, nxt = page(await app_svc.list_apps(ctx, who), lambda a: a.id, limit, cursor)
    emails = await app_svc.user_emails(ctx, who)
    return Page(items=[AppOut.of(a, emails) for a in items], next_cursor=nxt)


@router.post("/apps", status_code=201, tags=["apps"])
async def create_app(body: AppIn, ctx: CtxDep, who: ManageApps) -> AppOut:
    return AppOut.of(await app_svc.create_app(ctx, who, body.name), {})


@router.get("/apps/{name}", tags=["apps"])
async def get_app(name: str, ctx: CtxDep, who: ViewConfig) -> AppOut:
    app = await app_svc.get_app(ctx, who, name)
    return AppOut.of(app, await app_svc.user_emails(ctx, who))


@router.patch("/apps/{name}", tags=["apps"])
async def update_app(name: str, body: AppIn, ctx: CtxDep, who: ManageApps) -> AppOut:
    app = await app_svc.rename_app(ctx, who, name, body.name)
    return AppOut.of(app, await app_svc.user_emails(ctx, who))


@router.delete("/apps/{name}", status_code=204, tags=["apps"])
async def delete_app(name: str, ctx: CtxDep, who: ManageApps) -> Response:
    await app_svc.delete_app(ctx, who, name)
    return Response(status_code=204)


@router.get("/apps/{name}/test-list", tags=["apps"])
async def get_test_list(name: str, ctx: CtxDep, who: ViewConfig) -> TestListOut:
    """The list for mail that names no stage (each stage's list: ``…/stages/{stage}/test-list``)."""
    app = await app_svc.get_app(ctx, who, name)
    return TestListOut.of(app.test_list, await app_svc.user_emails(ctx, who))


@router.put("/apps/{name}/test-list", tags=["apps"])
async def put_test_list(name: str, body: TestListBody, ctx: CtxDep, who: ManageApps) -> TestListOut:
    """Replace the app's list for mail that names no stage and for every stage except
    ``production`` (the app-wide list of the first API version, production mail aside)."""
    app = await app_svc.set_test_list(
        ctx, who, name, addresses=body.addresses, users=body.user_entries(), active=body.active
    )
    return TestListOut.of(app.test_list, await app_svc.user_emails(ctx, who))


@router.get("/apps/{name}/stages/{stage}/test-list", tags=["apps"])
async def get_stage_test_list(name: str, stage: str, ctx: CtxDep, who: ViewConfig) -> TestListOut:
    """The app's list for mail sent on ``stage`` (empty and inactive when it has none)."""
    app = await app_svc.get_app(ctx, who, name)
    await app_svc.check_stage(ctx, who, stage)
    return TestListOut.of(app.list_for(stage), await app_svc.user_emails(ctx, who))


@router.put("/apps/{name}/stages/{stage}/test-list", tags=["apps"])
async def put_stage_test_list(
    name: str, stage: str, body: TestListBody, ctx: CtxDep, who: ManageApps
) -> TestListOut:
    """Replace the app's list for mail sent on ``stage``; while active it receives all of
    that mail."""
    app = await app_svc.set_test_list(
        ctx,
        who,
        name,
        stage=stage,
        addresses=body.addresses,
        users=body.user_entries(),
        active=body.active,
    )
    return TestListOut.of(app.list_for(stage), await app_svc.user_emails(ctx, who))
