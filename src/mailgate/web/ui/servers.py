"""The Email Settings page and its Mail Servers: cards, add/edit dialog, test, delete, stages.

Every change goes through :mod:`mailgate.services.servers` (and stages through
:mod:`mailgate.services.tenants`), the same use-cases as the REST API; "Test connection"
goes through the application's :class:`~mailgate.services.probe.Prober`, shared with the API
so one rate limit covers both.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from mailgate.domain.model import MailServer
from mailgate.domain.providers import list_providers, resolve_email
from mailgate.domain.roles import Permission
from mailgate.domain.server_deletion import Reassignment
from mailgate.errors import NotFound, RequestError
from mailgate.services import accounts as account_svc
from mailgate.services import servers as server_svc
from mailgate.services import signing as signing_svc
from mailgate.services import tenants as tenant_svc
from mailgate.services.routing_health import routing_health
from mailgate.web.api.schemas import MailServerIn, MailServerPatch, MailServerTestIn
from mailgate.web.deps import ProberDep
from mailgate.web.ui.forms import (
    FormErrors,
    ca_keystore_options,
    field_messages,
    form_problem,
    server_fields,
    validated,
)
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(prefix="/t/{tenant}/settings", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_CONFIGURATIONS))]
Manager = Annotated[Page, Depends(page(Permission.MANAGE_EMAIL_CONFIGURATIONS))]

#: Secret fields of a server: input name -> key in ``MailServer.secrets_set``.
SERVER_SECRETS = {
    "password": "password",
    "api_key": "api_key",
    "oauth.client_secret": "oauth_client_secret",
    "oauth.service_account_json": "oauth_service_account_json",
    "oauth.password": "oauth_password",
}
NEW_SERVER: dict[str, Any] = {
    "engine": "smtp",
    "port": "587",
    "security": "starttls",
    "min_tls_version": "1.2",
    "verify_certificate": True,
    "auth": "none",
    "timeout_seconds": "30",
    "max_connections": "4",
    "stages": [],
}


#: The inputs under the dialog's "Advanced" section: opened when one of them has an error.
ADVANCED_FIELDS = frozenset(
    {"timeout_seconds", "rate_limit_per_minute", "max_connections", "options"}
)
#: The OAuth provider a preset with XOAUTH2 implies.
PRESET_OAUTH = {"microsoft365": "microsoft", "outlook": "microsoft", "gmail": "google"}


def preset_dict(provider: Any) -> dict[str, Any]:
    """A preset for the dialog's script: the API's shape plus the OAuth provider it implies."""
    data: dict[str, Any] = provider.as_dict()
    if data.get("auth") == "xoauth2" and provider.key in PRESET_OAUTH:
        data["oauth_provider"] = PRESET_OAUTH[provider.key]
    return data


def delete_question(name: str) -> str:
    return f"Are you sure you want to delete {name}? This cannot be undone."


def server_values(server: MailServer) -> dict[str, Any]:
    """The dialog's inputs for a stored server: never a secret, only whether it is set."""
    values: dict[str, Any] = {
        "name": server.name,
        "engine": server.engine.value,
        "provider": server.provider or "",
        "host": server.host or "",
        "port": str(server.port),
        "security": server.security.value,
        "min_tls_version": server.min_tls_version.value,
        "verify_certificate": server.verify_certificate,
        "ca_certificates": server.ca_certificates or "",
        "ca_keystore": server.ca_keystore or "",
        "auth": server.auth.value,
        "username": server.username or "",
        "allow_insecure_auth": server.allow_insecure_auth,
        "api_base_url": server.api_base_url or "",
        "sender_upn": server.sender_upn or "",
        "timeout_seconds": f"{server.timeout_seconds:g}",
        "max_connections": str(server.max_connections),
        "rate_limit_per_minute": str(server.rate_limit_per_minute or ""),
        "stages": list(server.stages),
        "is_default": server.is_default,
        "fallback_server_id": server.fallback_server_id or "",
        "options": "\n".join(f"{k}={v}" for k, v in server.options.items()),
        "send_path": server.options.get("send_path", ""),
    }
    for key, value in (server.oauth or {}).items():
        if f"oauth.{key}" not in SERVER_SECRETS:
            values[f"oauth.{key}"] = value or ""
    return values


def submitted_values(form: Any) -> dict[str, Any]:
    """What was typed, to show again after an error, without the secrets."""
    values: dict[str, Any] = {
        k: v for k, v in form.items() if isinstance(v, str) and k not in SERVER_SECRETS
    }
    values.pop("csrf_token", None)
    values["stages"] = [s for s in form.getlist("stages") if isinstance(s, str)]
    for flag in ("verify_certificate", "allow_insecure_auth", "is_default"):
        values[flag] = form.get(flag) is not None
    # Secrets are never sent back: the page says which typed ones must be typed again.
    values["_cleared"] = [k for k in SERVER_SECRETS if form.get(k)]
    return values


async def _form_page(
    current: Page,
    *,
    server: MailServer | None,
    values: dict[str, Any],
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    servers = await server_svc.list_servers(current.ctx, current.caller)
    stages = await tenant_svc.list_stages(current.ctx, current.caller)
    holders = {s.id: s.name for s in servers}
    return render(
        current.request,
        "server_form.html",
        current=current,
        status=status,
        server=server,
        values=values,
        errors=errors or {},
        message=message,
        secrets_set=server.secrets_set if server else frozenset(),
        stages=[
            {
                "name": s.name,
                "held_by": holders.get(s.mail_server_id or "")
                if s.mail_server_id and (server is None or s.mail_server_id != server.id)
                else None,
            }
            for s in stages
        ],
        fallbacks=[s for s in servers if server is None or s.id != server.id],
        providers=list_providers(),
        providers_json=providers_json(),
        ca_keystore_options=ca_keystore_options(
            await signing_svc.list_keystores(current.ctx, current.caller)
        ),
        advanced_fields=ADVANCED_FIELDS,
    )


@router.get("")
async def settings_page(current: Viewer) -> Response:
    return await _settings(current)


async def _settings(
    current: Page, *, status: int = 200, stage_name: str = "", stage_error: str | None = None
) -> Response:
    servers = await server_svc.list_servers(current.ctx, current.caller)
    accounts = await account_svc.list_accounts(current.ctx, current.caller)
    stages = await tenant_svc.list_stages(current.ctx, current.caller)
    names = {s.id: s.name for s in servers}
    health = await routing_health(current.ctx, current.caller)
    with_dependants = {
        s.id
        for s in servers
        if (await server_svc.dependants(current.ctx, current.caller, s.id)).any
    }
    return render(
        current.request,
        "settings.html",
        current=current,
        problems=health.problems,
        with_dependants=with_dependants,
        account_ids={a.address: a.id for a in accounts},
        stage_delete_question=stage_delete_question,
        servers=servers,
        accounts=accounts,
        stages=stages,
        server_names=names,
        delete_question=delete_question,
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
        status=status,
        stage_name=stage_name,
        stage_error=stage_error,
    )


@router.get("/servers/new")
async def new_server(current: Manager) -> Response:
    return await _form_page(current, server=None, values=dict(NEW_SERVER))


@router.post("/servers/new")
async def create_server(current: Manager) -> Response:
    form = await current.form()
    try:
        fields = validated(MailServerIn, server_fields(form, editing=False))
        created = await server_svc.create_server(current.ctx, current.caller, fields)
    except (RequestError, FormErrors) as exc:
        return await _form_page(
            current, server=None, values=submitted_values(form), **form_problem(exc)
        )
    return redirect(current.url("/settings"), flash=f"Mail server {created.name} added.")


@router.get("/servers/{server_id}/edit")
async def edit_server(server_id: str, current: Manager) -> Response:
    server = await server_svc.get_server(current.ctx, current.caller, server_id)
    return await _form_page(current, server=server, values=server_values(server))


@router.post("/servers/{server_id}/edit")
async def update_server(server_id: str, current: Manager) -> Response:
    server = await server_svc.get_server(current.ctx, current.caller, server_id)
    form = await current.form()
    try:
        fields = validated(MailServerPatch, server_fields(form, editing=True))
        saved = await server_svc.update_server(current.ctx, current.caller, server_id, fields)
    except (RequestError, FormErrors) as exc:
        if isinstance(exc, NotFound):
            raise
        return await _form_page(
            current, server=server, values=submitted_values(form), **form_problem(exc)
        )
    return redirect(current.url("/settings"), flash=f"Mail server {saved.name} saved.")


@router.get("/servers/{server_id}/delete")
async def confirm_delete_server(server_id: str, current: Manager) -> Response:
    """The delete dialog: what depends on the server, and where each dependant goes."""
    return await _delete_page(current, server_id)


async def _delete_page(
    current: Manager,
    server_id: str,
    *,
    chosen: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    server = await server_svc.get_server(current.ctx, current.caller, server_id)
    dep = await server_svc.dependants(current.ctx, current.caller, server_id)
    others = [
        s for s in await server_svc.list_servers(current.ctx, current.caller) if s.id != server_id
    ]
    return render(
        current.request,
        "server_delete.html",
        current=current,
        server=server,
        dep=dep,
        others=others,
        chosen=chosen or {},
        message=message,
        question=delete_question(server.name),
        status=status,
    )


@router.post("/servers/{server_id}/delete")
async def delete_server(server_id: str, current: Manager) -> Response:
    form = await current.form()
    chosen = {
        key: value
        for key in ("stages_to", "accounts_to", "default_to", "mail_to")
        if isinstance(value := form.get(key), str) and value
    }
    server = await server_svc.get_server(current.ctx, current.caller, server_id)
    try:
        await server_svc.delete_server(
            current.ctx, current.caller, server_id, Reassignment(**chosen)
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        text = "; ".join([exc.detail, *(f"{e.field}: {e.message}" for e in exc.errors)])
        return await _delete_page(
            current, server_id, chosen=chosen, message=text, status=exc.status
        )
    return redirect(current.url("/settings"), flash=f"Mail server {server.name} deleted.")


@router.post("/servers/test")
async def test_server(current: Manager, prober: ProberDep) -> Response:
    """Test the dialog's settings (JSON for the dialog's script): the probe report."""
    form = await current.form()
    try:
        fields = server_fields(form, editing=False)
        for key in ("stages", "is_default", "fallback_server_id"):
            fields.pop(key, None)
        server_id = form.get("server_id")
        if isinstance(server_id, str) and server_id:
            fields["server_id"] = server_id
        fields = validated(MailServerTestIn, fields)
        report = await prober.test_unsaved(current.ctx, current.caller, fields)
    except FormErrors as exc:
        body = {
            "title": "Validation failed",
            "status": 422,
            "detail": str(exc),
            "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
        }
        return JSONResponse(body, status_code=422)
    return JSONResponse(report.to_dict())


@router.get("/providers/resolve")
async def resolve_provider(
    current: Viewer, email: Annotated[str, Query(max_length=320)] = ""
) -> Response:
    """The preset for an address's domain (JSON), or 404."""
    found = resolve_email(email)
    if found is None:
        raise NotFound(f"No preset for the domain of {email!r}; enter host and port yourself.")
    return JSONResponse(preset_dict(found))


@router.post("/stages")
async def create_stage(current: Manager) -> Response:
    form = await current.form()
    raw = form.get("name")
    name = raw.strip() if isinstance(raw, str) else ""
    try:
        await tenant_svc.create_stage(current.ctx, current.caller, name)
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        by_field, message = field_messages(exc)
        return await _settings(
            current, status=exc.status, stage_name=name, stage_error=by_field.get("name", message)
        )
    return redirect(current.url("/settings#stages"), flash=f"Stage {name} added.")


def stage_delete_question(name: str, server: str | None) -> str:
    if server:
        return (
            f"The stage {name} is assigned to mail server {server}: remove it from that "
            "server first; the delete is refused until then."
        )
    return (
        f"Are you sure you want to delete the stage {name}? Apps that send with stage "
        f"{name!r} are refused (422) afterwards. This cannot be undone."
    )


@router.get("/stages/{name}/delete")
async def confirm_delete_stage(name: str, current: Manager) -> Response:
    stages = {s.name: s for s in await tenant_svc.list_stages(current.ctx, current.caller)}
    stage = stages.get(name)
    if stage is None:
        raise NotFound(f"No stage {name!r}.")
    holder = None
    if stage.mail_server_id:
        holder = (
            await server_svc.get_server(current.ctx, current.caller, stage.mail_server_id)
        ).name
    return confirm_delete(
        current,
        question=stage_delete_question(name, holder),
        action=f"/settings/stages/{quote(name, safe='')}/delete",
        back="/settings#stages",
    )


@router.post("/stages/{name}/delete")
async def delete_stage(name: str, current: Manager) -> Response:
    await tenant_svc.delete_stage(current.ctx, current.caller, name)
    return redirect(current.url("/settings#stages"), flash=f"Stage {name} deleted.")


def providers_json() -> str:
    """The presets for the dialog's script (embedded as JSON data, not as code)."""
    return json.dumps([preset_dict(p) for p in list_providers()])
