"""DKIM keys (with the DNS record to publish), S/MIME keystores (upload) and templates (edit,
preview).

Changes go through :mod:`mailgate.services.signing` and :mod:`mailgate.services.templates`,
as the REST API's do: reading needs ``email_configurations:view``; keys and keystores
``email_configurations:manage``; templates ``apps:manage``. Private keys, keystore contents
and passwords are never shown.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.datastructures import UploadFile

from mailgate.compose.dkim import txt_strings
from mailgate.domain.roles import Permission
from mailgate.errors import Conflict, RequestError, ValidationFailed
from mailgate.services import signing as signing_svc
from mailgate.services import templates as template_svc
from mailgate.web.ui.forms import field_messages, form_text
from mailgate.web.ui.pages import Page, UiRoute, confirm_delete, page, redirect, render

router = APIRouter(prefix="/t/{tenant}", route_class=UiRoute, include_in_schema=False)

Viewer = Annotated[Page, Depends(page(Permission.VIEW_EMAIL_CONFIGURATIONS))]
Manager = Annotated[Page, Depends(page(Permission.MANAGE_EMAIL_CONFIGURATIONS))]
Developer = Annotated[Page, Depends(page(Permission.MANAGE_APPS))]
MAX_UPLOAD = 700_000  # bytes of a keystore file (its base64 fits the API's 1 MB limit)


# DKIM keys -----------------------------------------------------------------------------------


async def _dkim_page(
    current: Page,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    keys = await signing_svc.list_dkim_keys(current.ctx, current.caller)
    records = []
    for key in keys:
        name, value = signing_svc.dns_record(key)
        records.append({"key": key, "name": name, "value": value, "strings": txt_strings(value)})
    return render(
        current.request,
        "dkim.html",
        current=current,
        status=status,
        records=records,
        values=values or {"algorithm": "rsa", "bits": "2048"},
        errors=errors or {},
        message=message,
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
    )


@router.get("/dkim")
async def dkim_page(current: Viewer) -> Response:
    return await _dkim_page(current)


@router.post("/dkim")
async def create_dkim_key(current: Manager) -> Response:
    form = await current.form()
    values = {k: form_text(form, k) for k in ("domain", "selector", "algorithm", "bits")}
    fields: dict[str, Any] = {k: values[k] for k in ("domain", "selector", "algorithm")}
    try:
        if values["bits"] and values["algorithm"] == "rsa":
            if not values["bits"].isdigit():
                raise ValidationFailed.field("bits", "must be a whole number of bits")
            fields["bits"] = int(values["bits"])
        key = await signing_svc.create_dkim_key(current.ctx, current.caller, fields)
    except RequestError as exc:
        errors, message = field_messages(exc)
        return await _dkim_page(
            current, status=exc.status, values=values, errors=errors, message=message
        )
    return redirect(
        current.url(f"/dkim#key-{key.id}"),
        flash=f"Key {key.selector}._domainkey.{key.domain} created: publish its DNS record.",
    )


@router.get("/dkim/{key_id}/delete")
async def confirm_delete_key(key_id: str, current: Manager) -> Response:
    key = await signing_svc.get_dkim_key(current.ctx, current.caller, key_id)
    return confirm_delete(
        current,
        question=f"Are you sure you want to delete the DKIM key {key.selector} of {key.domain}? "
        "Mail is no longer signed with it.",
        action=f"/dkim/{key.id}/delete",
        back="/dkim",
    )


@router.post("/dkim/{key_id}/delete")
async def delete_key(key_id: str, current: Manager) -> Response:
    await signing_svc.delete_dkim_key(current.ctx, current.caller, key_id)
    return redirect(current.url("/dkim"), flash="DKIM key deleted.")


# Keystores ------------------------------------------------------------------------------------


async def _keystores_page(
    current: Page,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    refused: str | None = None,
) -> Response:
    """The keystores with what uses each; ``refused``: the id of a keystore whose delete was
    just refused (its card is marked, ``message`` says why)."""
    return render(
        current.request,
        "keystores.html",
        current=current,
        status=status,
        keystores=await signing_svc.list_keystores(current.ctx, current.caller),
        uses=await signing_svc.keystore_uses(current.ctx, current.caller),
        values=values or {"kind": "pkcs12"},
        errors=errors or {},
        message=message,
        refused=refused,
        can_manage=current.can(Permission.MANAGE_EMAIL_CONFIGURATIONS),
    )


def _who(pairs: tuple[tuple[str, str], ...], nouns: tuple[str, str], does: tuple[str, str]) -> str:
    """ "mail server Relay trusts it" or "mail servers A, B trust it": the singular or plural
    of ``nouns`` and ``does`` by the number of ``pairs``."""
    names = ", ".join(name for _, name in pairs)
    n = 0 if len(pairs) == 1 else 1
    return f"{nouns[n]} {names} {does[n]}"


TRUST = ("trusts it", "trust it")
SIGN = ("signs mail with it", "sign mail with it")


def refusal(name: str, use: signing_svc.KeystoreUse) -> str:
    """Why the keystore ``name`` was not deleted, and what to do first, in the UI's words."""
    parts = []
    if use.servers:
        parts.append(_who(use.servers, ("mail server", "mail servers"), TRUST))
    if use.inboxes:
        parts.append(_who(use.inboxes, ("the inbox of", "the inboxes of"), TRUST))
    if use.signers:
        parts.append(_who(use.signers, ("the email account", "the email accounts"), SIGN))
    return (
        f"{name} was not deleted: {'; '.join(parts)}. First choose another keystore, or none, "
        "in their dialogs (Email Settings), then delete it."
    )


async def _uploaded(form: Any, missing: str) -> bytes:
    """The bytes of the form's ``file``; a 422 naming ``file`` when none or too large."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ValidationFailed.field("file", missing)
    try:
        data = await upload.read(MAX_UPLOAD + 1)
    finally:
        await upload.close()
    if len(data) > MAX_UPLOAD:
        raise ValidationFailed.field("file", f"at most {MAX_UPLOAD // 1000} kB")
    return data


@router.get("/keystores")
async def keystores_page(current: Viewer) -> Response:
    return await _keystores_page(current)


@router.post("/keystores")
async def upload_keystore(current: Manager) -> Response:
    form = await current.form()
    values = {"name": form_text(form, "name"), "kind": form_text(form, "kind") or "pkcs12"}
    try:
        data = await _uploaded(form, "choose a .p12/.pfx file or PEM certificates")
        password = form.get("password")
        created = await signing_svc.create_keystore(
            current.ctx,
            current.caller,
            {
                **values,
                "content": base64.b64encode(data).decode("ascii"),
                "password": password if isinstance(password, str) and password else None,
            },
        )
    except RequestError as exc:
        errors, message = field_messages(exc)
        if errors.pop("content", None) is not None:
            errors["file"] = "could not be read as that kind of file (or the password is wrong)"
        if form.get("password"):
            values["_cleared"] = "password"
        return await _keystores_page(
            current, status=exc.status, values=values, errors=errors, message=message
        )
    return redirect(current.url("/keystores"), flash=f"Keystore {created.name} uploaded.")


@router.get("/keystores/{keystore_id}/delete")
async def confirm_delete_keystore(keystore_id: str, current: Manager) -> Response:
    found = await signing_svc.get_keystore(current.ctx, current.caller, keystore_id)
    return confirm_delete(
        current,
        question=f"Are you sure you want to delete the keystore {found.name}? "
        "This cannot be undone.",
        action=f"/keystores/{found.id}/delete",
        back="/keystores",
    )


@router.post("/keystores/{keystore_id}/replace")
async def replace_keystore(keystore_id: str, current: Manager) -> Response:
    """New certificates for a ``ca`` keystore: every server and inbox naming it trusts them
    from its next connection."""
    form = await current.form()
    try:
        data = await _uploaded(form, "choose the PEM file of the new CA certificates")
        replaced = await signing_svc.replace_keystore(
            current.ctx,
            current.caller,
            keystore_id,
            {"content": base64.b64encode(data).decode("ascii")},
        )
    except RequestError as exc:
        errors, message = field_messages(exc)
        reason = errors.get("file") or errors.get("content") or message
        return await _keystores_page(
            current, status=exc.status, message=f"The certificates were not replaced: {reason}"
        )
    return redirect(
        current.url("/keystores"),
        flash=f"Keystore {replaced.name} replaced: the servers and inboxes that trust it use "
        "the new certificates from their next connection.",
    )


@router.post("/keystores/{keystore_id}/delete")
async def delete_keystore(keystore_id: str, current: Manager) -> Response:
    found = await signing_svc.get_keystore(current.ctx, current.caller, keystore_id)
    try:
        await signing_svc.delete_keystore(current.ctx, current.caller, keystore_id)
    except Conflict as exc:
        # The service's 409 (the API's too); its users are listed again for the words here.
        use = (await signing_svc.keystore_uses(current.ctx, current.caller)).get(found.id)
        return await _keystores_page(
            current,
            status=exc.status,
            message=refusal(found.name, use) if use else exc.detail,
            refused=found.id,
        )
    return redirect(current.url("/keystores"), flash="Keystore deleted.")


# Templates ------------------------------------------------------------------------------------


@router.get("/templates")
async def templates_page(current: Viewer) -> Response:
    return render(
        current.request,
        "templates.html",
        current=current,
        templates=await template_svc.list_templates(current.ctx, current.caller),
        can_manage=current.can(Permission.MANAGE_APPS),
    )


async def _template_form(
    current: Page,
    *,
    name: str | None,
    values: dict[str, str],
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    preview: dict[str, Any] | None = None,
) -> Response:
    return render(
        current.request,
        "template_form.html",
        current=current,
        status=status,
        name=name,
        values=values,
        errors=errors or {},
        message=message,
        preview=preview,
        can_manage=current.can(Permission.MANAGE_APPS),
    )


@router.get("/templates/new")
async def new_template(current: Developer) -> Response:
    values = {"variables": '{"name": "Ada"}', "subject": "Hello {{ name }}"}
    return await _template_form(current, name=None, values=values)


@router.get("/templates/{name}")
async def edit_template(name: str, current: Viewer) -> Response:
    found = await template_svc.get_template(current.ctx, current.caller, name)
    values = {
        "name": found.name,
        "subject": found.subject,
        "text": found.text or "",
        "html": found.html or "",
        "variables": "{}",
    }
    return await _template_form(current, name=name, values=values)


@router.post("/templates/save")
async def save_template(current: Developer) -> Response:
    form = await current.form()
    values = {k: str(form.get(k) or "") for k in ("name", "subject", "text", "html", "variables")}
    values["name"] = values["name"].strip()
    editing = form_text(form, "editing") or None
    try:
        name = template_svc.check_name(values["name"])
        fields = {k: values[k] or None for k in ("subject", "text", "html")}
        if form.get("action") == "preview":
            preview = await _preview(fields, values["variables"], name)
            return await _template_form(current, name=editing, values=values, preview=preview)
        await template_svc.put_template(current.ctx, current.caller, name, fields)
    except RequestError as exc:
        errors, message = field_messages(exc)
        for key in list(errors):
            if key.startswith("template.variables"):
                errors["variables"] = f"{key.rsplit('.', 1)[-1]}: {errors.pop(key)}"
        return await _template_form(
            current,
            name=editing,
            values=values,
            status=exc.status,
            errors=errors,
            message=message,
        )
    return redirect(current.url(f"/templates/{name}"), flash=f"Template {name} saved.")


async def _preview(fields: dict[str, Any], variables: str, name: str) -> dict[str, Any]:
    """The template rendered with ``variables`` (JSON), in the sandbox that sending uses."""
    try:
        data = json.loads(variables or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationFailed.field("variables", f"is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValidationFailed.field("variables", "must be a JSON object")
    template_svc.check_name(name)
    source = template_svc.check_source(fields, name)
    subject, text, html = await asyncio.to_thread(
        template_svc.fill_from_template,
        {"template": {"name": name, "variables": data}},
        {name: source},
    )
    return {"subject": subject, "text": text, "html": html}


@router.get("/templates/{name}/delete")
async def confirm_delete_template(name: str, current: Developer) -> Response:
    found = await template_svc.get_template(current.ctx, current.caller, name)
    return confirm_delete(
        current,
        question=f"Are you sure you want to delete the template {found.name}? "
        "Messages that name it are refused.",
        action=f"/templates/{found.name}/delete",
        back="/templates",
    )


@router.post("/templates/{name}/delete")
async def delete_template(name: str, current: Developer) -> Response:
    await template_svc.delete_template(current.ctx, current.caller, name)
    return redirect(current.url("/templates"), flash=f"Template {name} deleted.")
