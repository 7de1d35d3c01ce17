"""DKIM keys, keystores and message templates (API.md "Keystores, DKIM, templates").

Private keys, keystore contents and passwords are write-only: no response carries them.
Changing DKIM keys and keystores needs ``email_configurations:manage``; changing templates
needs ``apps:manage`` (developers own their templates); reading needs
``email_configurations:view``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from mailgate.compose.dkim import txt_strings
from mailgate.services import signing as signing_svc
from mailgate.services import templates as template_svc
from mailgate.services.signing import DkimKey, KeystoreInfo
from mailgate.services.templates import Template
from mailgate.web.api.schemas import Page
from mailgate.web.api.schemas_signing import (
    DkimKeyIn,
    DkimKeyOut,
    DnsRecordOut,
    KeystoreAliasOut,
    KeystoreIn,
    KeystoreOut,
    KeystorePatch,
    TemplateIn,
    TemplateOut,
)
from mailgate.web.deps import CtxDep, Limit, ManageApps, ManageConfig, ViewConfig, page

router = APIRouter(prefix="/api/v1/tenants/{tenant}")


def dkim_out(key: DkimKey) -> DkimKeyOut:
    name, value = signing_svc.dns_record(key)
    return DkimKeyOut(
        id=key.id,
        domain=key.domain,
        selector=key.selector,
        algorithm=key.algorithm,
        bits=key.bits,
        dns_record=DnsRecordOut(name=name, value=value, strings=list(txt_strings(value))),
        created_at=key.created_at,
    )


def keystore_out(keystore: KeystoreInfo) -> KeystoreOut:
    return KeystoreOut(
        id=keystore.id,
        name=keystore.name,
        kind=keystore.kind,
        aliases=[
            KeystoreAliasOut(alias=a.alias, subject=a.subject, not_after=a.not_after)
            for a in keystore.aliases
        ],
        not_after=keystore.not_after,
        created_at=keystore.created_at,
    )


def template_out(template: Template) -> TemplateOut:
    return TemplateOut(
        name=template.name,
        subject=template.subject,
        text=template.text,
        html=template.html,
        version=template.version,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


# DKIM keys ------------------------------------------------------------------------------


@router.get("/dkim-keys", tags=["dkim keys"])
async def list_dkim_keys(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[DkimKeyOut]:
    keys = await signing_svc.list_dkim_keys(ctx, who)
    items, nxt = page(keys, lambda k: k.id, limit, cursor)
    return Page(items=[dkim_out(k) for k in items], next_cursor=nxt)


@router.post("/dkim-keys", status_code=201, tags=["dkim keys"])
async def create_dkim_key(body: DkimKeyIn, ctx: CtxDep, who: ManageConfig) -> DkimKeyOut:
    """Generate a key pair for a domain and selector; publish ``dns_record`` in DNS.

    Mail from the domain (or a subdomain without a key of its own) is signed with its
    newest key from then on.
    """
    fields = body.model_dump(exclude_unset=True)
    return dkim_out(await signing_svc.create_dkim_key(ctx, who, fields))


@router.get("/dkim-keys/{key_id}", tags=["dkim keys"])
async def get_dkim_key(key_id: str, ctx: CtxDep, who: ViewConfig) -> DkimKeyOut:
    return dkim_out(await signing_svc.get_dkim_key(ctx, who, key_id))


@router.delete("/dkim-keys/{key_id}", status_code=204, tags=["dkim keys"])
async def delete_dkim_key(key_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    await signing_svc.delete_dkim_key(ctx, who, key_id)
    return Response(status_code=204)


# Keystores ------------------------------------------------------------------------------


@router.get("/keystores", tags=["keystores"])
async def list_keystores(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[KeystoreOut]:
    stores = await signing_svc.list_keystores(ctx, who)
    items, nxt = page(stores, lambda k: k.id, limit, cursor)
    return Page(items=[keystore_out(k) for k in items], next_cursor=nxt)


@router.post("/keystores", status_code=201, tags=["keystores"])
async def create_keystore(body: KeystoreIn, ctx: CtxDep, who: ManageConfig) -> KeystoreOut:
    """Upload a PKCS#12 file (S/MIME identities) or PEM CA certificates, base64-encoded."""
    fields = body.model_dump(exclude_unset=True)
    fields.setdefault("kind", body.kind)
    return keystore_out(await signing_svc.create_keystore(ctx, who, fields))


@router.get("/keystores/{keystore_id}", tags=["keystores"])
async def get_keystore(keystore_id: str, ctx: CtxDep, who: ViewConfig) -> KeystoreOut:
    return keystore_out(await signing_svc.get_keystore(ctx, who, keystore_id))


@router.patch("/keystores/{keystore_id}", tags=["keystores"])
async def replace_keystore(
    keystore_id: str, body: KeystorePatch, ctx: CtxDep, who: ManageConfig
) -> KeystoreOut:
    """Replace the certificates of a ``ca`` keystore: every mail server and inbox naming it
    (``ca_keystore``) trusts the new ones from its next connection. 422 for a ``pkcs12``
    keystore, which is never replaced."""
    fields = body.model_dump(exclude_unset=True)
    return keystore_out(await signing_svc.replace_keystore(ctx, who, keystore_id, fields))


@router.delete("/keystores/{keystore_id}", status_code=204, tags=["keystores"])
async def delete_keystore(keystore_id: str, ctx: CtxDep, who: ManageConfig) -> Response:
    """Delete a keystore; 409 while an email account signs with it, or while mail servers
    or inboxes trust it (``ca_keystore``; the problem lists them)."""
    await signing_svc.delete_keystore(ctx, who, keystore_id)
    return Response(status_code=204)


# Templates ------------------------------------------------------------------------------


@router.get("/templates", tags=["templates"])
async def list_templates(
    ctx: CtxDep, who: ViewConfig, limit: Limit = 100, cursor: str | None = None
) -> Page[TemplateOut]:
    templates = sorted(await template_svc.list_templates(ctx, who), key=lambda t: t.name)
    items, nxt = page(templates, lambda t: t.name, limit, cursor)
    return Page(items=[template_out(t) for t in items], next_cursor=nxt)


@router.get("/templates/{name}", tags=["templates"])
async def get_template(name: str, ctx: CtxDep, who: ViewConfig) -> TemplateOut:
    return template_out(await template_svc.get_template(ctx, who, name))


@router.put("/templates/{name}", tags=["templates"])
async def put_template(
    name: str, body: TemplateIn, ctx: CtxDep, who: ManageApps, response: Response
) -> TemplateOut:
    """Create (201) or replace (200) a template; ``version`` counts the saves."""
    template, created = await template_svc.put_template(
        ctx, who, name, body.model_dump(exclude_unset=True)
    )
    response.status_code = 201 if created else 200
    return template_out(template)


@router.delete("/templates/{name}", status_code=204, tags=["templates"])
async def delete_template(name: str, ctx: CtxDep, who: ManageApps) -> Response:
    await template_svc.delete_template(ctx, who, name)
    return Response(status_code=204)
