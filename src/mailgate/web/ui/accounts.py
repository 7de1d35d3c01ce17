"""Email Accounts on the Email Settings page: add/edit dialog, default marker, delete.

Changes go through :mod:`mailgate.services.accounts`. The address is read-only after
creation (the service refuses a change; the dialog shows it read-only). The Sync button's
script calls ``POST /api/v1/tenants/{t}/email-accounts/{id}/sync`` itself, and the dialog's
Test inbox button ``POST …/email-accounts/{id}/test-inbox`` (the stored settings).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Response

from mailgate.domain.model import EmailAccount
from mailgate.domain.roles import Permission
from mailgate.errors import NotFound, RequestError
from mailgate.services import accounts as account_svc
from mailgate.services import servers as server_svc
from mailgate.services import signing as signing_svc
from mailgate.web.api.schemas import EmailAccountIn, EmailAccountPatch
from mailgate.web.ui.forms import (
    FormErrors,
    account_fields,
    ca_keystore_options,
    form_problem,
    validated,
)
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(
    prefix="/t/{tenant}/settings/accounts", route_class=UiRoute, include_in_schema=False
)

Manager = Annotated[Page, Depends(page(Permission.MANAGE_EMAIL_CONFIGURATIONS))]

NEW_ACCOUNT: dict[str, Any] = {
    "imap.port": "993",
    "imap.security": "tls",
    "imap.folder": "INBOX",
    "imap.auth": "password",
}
#: Write-only dialog inputs: never shown back.
_WRITE_ONLY = ("imap.password", "imap.oauth.client_secret", "imap.oauth.service_account_json")


def delete_question(account: EmailAccount) -> str:
    name = account.display_name
    return f"Are you sure you want to delete the account {name}? This cannot be undone."


def account_values(account: EmailAccount) -> dict[str, Any]:
    """The dialog's inputs for a stored account: never the IMAP password."""
    values: dict[str, Any] = {
        "address": account.address,
        "display_name": account.display_name,
        "description": account.description,
        "reply_to": account.reply_to or "",
        "mail_server_id": account.mail_server_id or "",
        "is_default": account.is_default,
        **NEW_ACCOUNT,
    }
    if account.imap is not None:
        values.update(
            {
                "imap.host": account.imap.host,
                "imap.port": str(account.imap.port),
                "imap.security": account.imap.security,
                "imap.username": account.imap.username or "",
                "imap.folder": account.imap.folder,
                "imap.sync_interval_minutes": str(account.imap.sync_interval_minutes or ""),
                "imap.auth": account.imap.auth,
                "imap.ca_certificates": account.imap.ca_certificates or "",
                "imap.ca_keystore": account.imap.ca_keystore or "",
            }
        )
        for name, value in (account.imap.oauth or {}).items():
            values[f"imap.oauth.{name}"] = value or ""
    if account.smime is not None:
        values["smime.keystore_id"] = account.smime.keystore_id
        values["smime.alias"] = account.smime.alias or ""
    return values


def _submitted(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        k: v
        for k, v in form.items()
        if isinstance(v, str) and k not in (*_WRITE_ONLY, "csrf_token")
    }
    values["is_default"] = form.get("is_default") is not None
    values["_cleared"] = ["imap.password"] if form.get("imap.password") else []
    return values


async def _form_page(
    current: Page,
    *,
    account: EmailAccount | None,
    values: dict[str, Any],
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    servers = await server_svc.list_servers(current.ctx, current.caller)
    stored = await signing_svc.list_keystores(current.ctx, current.caller)
    keystores = [k for k in stored if k.kind == "pkcs12"]
    return render(
        current.request,
        "account_form.html",
        current=current,
        status=status,
        account=account,
        values=values,
        errors=errors or {},
        message=message,
        servers=servers,
        server_options=[(s.id, s.name) for s in servers],
        keystores=keystores,
        keystore_options=[(k.id, k.name) for k in keystores],
        ca_keystore_options=ca_keystore_options(stored),
        imap_password_set=account is not None and "imap_password" in account.secrets_set,
        imap_client_secret_set=account is not None
        and "imap_oauth_client_secret" in account.secrets_set,
        imap_service_account_set=account is not None
        and "imap_oauth_service_account_json" in account.secrets_set,
        test_inbox_url=(
            f"/api/v1/tenants/{quote(current.tenant)}/email-accounts/{account.id}/test-inbox"
            if account is not None and account.imap is not None
            else None
        ),
    )


@router.get("/new")
async def new_account(current: Manager) -> Response:
    return await _form_page(current, account=None, values=dict(NEW_ACCOUNT))


@router.post("/new")
async def create_account(current: Manager) -> Response:
    form = await current.form()
    try:
        fields = validated(EmailAccountIn, account_fields(form, editing=False))
        created = await account_svc.create_account(current.ctx, current.caller, fields)
    except (RequestError, FormErrors) as exc:
        return await _form_page(current, account=None, values=_submitted(form), **form_problem(exc))
    return redirect(current.url("/settings"), flash=f"Email account {created.address} added.")


@router.get("/{account_id}/edit")
async def edit_account(account_id: str, current: Manager) -> Response:
    account = await account_svc.get_account(current.ctx, current.caller, account_id)
    return await _form_page(current, account=account, values=account_values(account))


@router.post("/{account_id}/edit")
async def update_account(account_id: str, current: Manager) -> Response:
    account = await account_svc.get_account(current.ctx, current.caller, account_id)
    form = await current.form()
    try:
        fields = validated(EmailAccountPatch, account_fields(form, editing=True))
        saved = await account_svc.update_account(current.ctx, current.caller, account_id, fields)
    except (RequestError, FormErrors) as exc:
        if isinstance(exc, NotFound):
            raise
        values = {**_submitted(form), "address": account.address}
        return await _form_page(current, account=account, values=values, **form_problem(exc))
    return redirect(current.url("/settings"), flash=f"Email account {saved.address} saved.")


@router.get("/{account_id}/delete")
async def confirm_delete_account(account_id: str, current: Manager) -> Response:
    account = await account_svc.get_account(current.ctx, current.caller, account_id)
    return confirm_delete(
        current,
        question=delete_question(account),
        action=f"/settings/accounts/{account.id}/delete",
        back="/settings",
    )


@router.post("/{account_id}/delete")
async def delete_account(account_id: str, current: Manager) -> Response:
    account = await account_svc.get_account(current.ctx, current.caller, account_id)
    await account_svc.delete_account(current.ctx, current.caller, account_id)
    return redirect(current.url("/settings"), flash=f"Email account {account.address} deleted.")
