"""Apps and their email test lists (seed: ODC "Create a test list")."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Response

from mailgate.domain.model import NO_STAGE, App, Stage
from mailgate.domain.roles import Permission
from mailgate.errors import NotFound, RequestError
from mailgate.services import apps as app_svc
from mailgate.services import tenants as tenant_svc
from mailgate.web.ui.forms import field_messages, lines
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(prefix="/t/{tenant}/apps", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_CONFIGURATIONS))]
Manager = Annotated[Page, Depends(page(Permission.MANAGE_APPS))]
_INDEXED = re.compile(r"addresses\[(\d+)\]")


def offending_lines(exc: RequestError, text: str, addresses: list[str]) -> str:
    """The service's ``addresses[i]`` errors as "line N (text): rule", one per problem; N is
    the line of the text area that holds the address."""
    raw_lines = text.splitlines()
    found = []
    for error in exc.errors:
        match = _INDEXED.fullmatch(error.field)
        if match and int(match.group(1)) < len(addresses):
            address = addresses[int(match.group(1))]
            number = next(
                (n for n, line in enumerate(raw_lines, start=1) if address in line),
                int(match.group(1)) + 1,
            )
            found.append(f"line {number} ({address}): {error.message}")
    return "; ".join(found)


def delete_question(name: str) -> str:
    return f"Are you sure you want to delete {name}? This cannot be undone."


async def _list_page(
    current: Page, *, status: int = 200, error: str | None = None, name: str = ""
) -> Response:
    return render(
        current.request,
        "apps.html",
        current=current,
        status=status,
        apps=await app_svc.list_apps(current.ctx, current.caller),
        can_manage=current.can(Permission.MANAGE_APPS),
        error=error,
        name=name,
        delete_question=delete_question,
    )


@router.get("")
async def apps_page(current: Viewer) -> Response:
    return await _list_page(current)


@router.post("")
async def create_app(current: Manager) -> Response:
    form = await current.form()
    raw = form.get("name")
    name = raw.strip() if isinstance(raw, str) else ""
    try:
        await app_svc.create_app(current.ctx, current.caller, name)
    except RequestError as exc:
        by_field, message = field_messages(exc)
        return await _list_page(
            current, status=exc.status, error=by_field.get("name", message), name=name
        )
    return redirect(current.url(f"/apps/{name}"), flash=f"App {name} added.")


def _tabs(stages: list[Stage]) -> list[tuple[str, str]]:
    """(stage key, label) of each tab: every stage, then mail that names no stage."""
    return [*((s.name, s.name) for s in stages), (NO_STAGE, "No stage")]


def panel_id(key: str) -> str:
    """The HTML id of a stage's tab panel: ``stage-NAME``, or ``no-stage`` for mail that names
    no stage (no stage's id starts with ``no``)."""
    return "no-stage" if key == NO_STAGE else f"stage-{key}"


async def _app_page(
    current: Page,
    app: App,
    stage: str,
    *,
    status: int = 200,
    addresses: str | None = None,
    users: str | None = None,
    active: bool | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    """The app with one panel per tab; the panel of ``stage`` is the open one and shows what
    was typed into it (``addresses``, ``users``, ``active``) with its ``errors``."""
    emails = await app_svc.user_emails(current.ctx, current.caller)
    stages = await tenant_svc.list_stages(current.ctx, current.caller)
    panels = []
    for key, label in _tabs(stages):
        test_list = app.list_for(key or None)
        panel: dict[str, Any] = {
            "key": key,
            "label": label,
            "id": panel_id(key),
            "saved_active": test_list.active,
            "saved_addresses": test_list.addresses,
            "addresses": "\n".join(test_list.addresses),
            "users": "\n".join(emails[u] for u in test_list.users if u in emails),
            "active": test_list.active,
            "deleted_users": [u for u in test_list.users if u not in emails],
            "errors": {},
            "message": None,
        }
        if key == stage:
            panel["addresses"] = panel["addresses"] if addresses is None else addresses
            panel["users"] = panel["users"] if users is None else users
            panel["active"] = panel["active"] if active is None else active
            panel["errors"] = errors or {}
            panel["message"] = message
        panels.append(panel)
    return render(
        current.request,
        "app.html",
        current=current,
        status=status,
        app=app,
        panels=panels,
        stage=stage,
        can_manage=current.can(Permission.MANAGE_APPS),
    )


def _chosen(stages: list[Stage], asked: str | None) -> str:
    """The tab to show: the stage asked for, else the first stage."""
    if asked is not None:
        if asked == NO_STAGE or any(s.name == asked for s in stages):
            return asked
        raise NotFound(f"No stage {asked!r}.")
    return stages[0].name if stages else NO_STAGE


@router.get("/{name}")
async def app_page(name: str, current: Viewer, stage: str | None = None) -> Response:
    app = await app_svc.get_app(current.ctx, current.caller, name)
    stages = await tenant_svc.list_stages(current.ctx, current.caller)
    return await _app_page(current, app, _chosen(stages, stage))


@router.post("/{name}/test-list")
async def save_test_list(name: str, current: Manager) -> Response:
    """Save the list of the tab's stage (a form without ``stage`` sets the app-level list,
    as ``PUT …/apps/{name}/test-list`` does)."""
    app = await app_svc.get_app(current.ctx, current.caller, name)
    form = await current.form()
    raw = form.get("addresses")
    text = raw if isinstance(raw, str) else ""
    raw_users = form.get("users")
    user_text = raw_users if isinstance(raw_users, str) else ""
    raw_stage = form.get("stage")
    stage = raw_stage if isinstance(raw_stage, str) else None
    active = form.get("active") is not None
    addresses = lines(text)
    try:
        await app_svc.set_test_list(
            current.ctx,
            current.caller,
            name,
            addresses=addresses,
            users=lines(user_text),
            active=active,
            stage=stage,
        )
    except RequestError as exc:
        if isinstance(exc, NotFound):
            raise
        errors, message = field_messages(exc)
        errors["addresses"] = offending_lines(exc, text, addresses) or errors.get("addresses", "")
        if not errors["addresses"]:
            del errors["addresses"]
        return await _app_page(
            current,
            app,
            stage or "",
            status=exc.status,
            addresses=text,
            users=user_text,
            active=active,
            errors=errors,
            message=message,
        )
    where = "" if stage is None else f"?stage={quote(stage)}"
    return redirect(current.url(f"/apps/{name}{where}"), flash="Test list saved.")


@router.get("/{name}/delete")
async def confirm_delete_app(name: str, current: Manager) -> Response:
    app = await app_svc.get_app(current.ctx, current.caller, name)
    return confirm_delete(
        current,
        question=delete_question(app.name),
        action=f"/apps/{app.name}/delete",
        back="/apps",
    )


@router.post("/{name}/delete")
async def delete_app(name: str, current: Manager) -> Response:
    await app_svc.delete_app(current.ctx, current.caller, name)
    return redirect(current.url("/apps"), flash=f"App {name} deleted.")
