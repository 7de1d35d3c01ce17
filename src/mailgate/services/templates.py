"""Message templates: sandboxed Jinja sources for subject, text and HTML (SPEC.md section 3).

Rules applied here: a template is saved whole (``PUT``) and only when every part compiles
in the sandbox and reaches for no private name (422 naming ``subject``, ``text`` or
``html``); each save adds one to ``version``. Developers manage templates (permission
``apps:manage``); rendering happens when a message that names the template is accepted
(:func:`mailgate.services.send.prepare`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from mailgate.compose.render_pool import default_pool
from mailgate.compose.templates import TemplateSource, check_template
from mailgate.errors import FieldError, ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.context import Caller, Context
from mailgate.storage.templates import Template, TemplateRepo

__all__ = [
    "Template",
    "check_source",
    "delete_template",
    "fill_from_template",
    "get_template",
    "list_templates",
    "put_template",
    "template_source",
]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PARTS: Final = ("subject", "text", "html")
#: Longest source of one part, in characters.
MAX_SOURCE_CHARS: Final = 1_000_000


def template_source(template: Template) -> TemplateSource:
    """The sources of ``template``, as :func:`~mailgate.compose.templates.render_template`
    takes them."""
    return TemplateSource(subject=template.subject, text=template.text, html=template.html)


def check_name(name: str) -> str:
    """``name`` when it is a valid template name, else a 422 naming ``name``."""
    if _NAME.fullmatch(name) is None:
        raise ValidationFailed.field(
            "name",
            "must be 1 to 100 letters, digits, '.', '_' or '-', starting with one of the first two",
        )
    return name


def _source(fields: Mapping[str, Any], name: str) -> TemplateSource:
    """The validated sources; every error names the API field (``subject`` …)."""
    errors: list[FieldError] = []
    values: dict[str, str | None] = {}
    for part in _PARTS:
        value = fields.get(part)
        if value is not None and not isinstance(value, str):
            errors.append(FieldError(part, "must be a string"))
        elif value is not None and len(value) > MAX_SOURCE_CHARS:
            errors.append(FieldError(part, f"at most {MAX_SOURCE_CHARS} characters"))
        else:
            values[part] = value or None
    if not values.get("subject") and not any(e.field == "subject" for e in errors):
        errors.append(FieldError("subject", "is required"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    source = TemplateSource(
        subject=values["subject"] or "", text=values.get("text"), html=values.get("html")
    )
    try:
        check_template(source, name=name)
    except ValidationFailed as exc:
        # The compose layer names parts as a send request sees them (template.subject);
        # here the fields are the body's own.
        renamed = [FieldError(e.field.removeprefix("template."), e.message) for e in exc.errors]
        detail = "; ".join(f"{e.field}: {e.message}" for e in renamed)
        raise ValidationFailed(detail, errors=renamed) from exc
    return source


def check_source(fields: Mapping[str, Any], name: str) -> TemplateSource:
    """The sources of ``fields`` checked as a save checks them (422 naming the part)."""
    return _source(fields, name)


def fill_from_template(
    item: Mapping[str, Any], sources: Mapping[str, TemplateSource]
) -> tuple[Any, Any, Any]:
    """Subject, text and HTML of a send request: its own, completed from the template it
    names (``template: {name, variables}``) where it leaves them out (None).

    ``sources`` holds the tenant's templates the request may name. Raises a 422 naming
    ``template.name`` for an unknown template, ``template.variables.<name>`` for a missing
    variable (see :func:`~mailgate.compose.templates.render_template`), and for a render
    over its time or memory budget (see :mod:`mailgate.compose.render_pool`). Blocks until
    the render is done: call it from a thread, not on the event loop.
    """
    subject, text, html = item.get("subject"), item.get("text"), item.get("html")
    ref = item.get("template")
    if ref is None:
        return subject, text, html
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        raise ValidationFailed.field("template.name", "is required")
    name = ref["name"]
    source = sources.get(name)
    if source is None:
        raise ValidationFailed.field("template.name", f"no template named {name!r}")
    variables = ref.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise ValidationFailed.field("template.variables", "must be an object")
    rendered = default_pool().render(source, variables, name=name)
    return (
        rendered.subject if subject is None else subject,
        rendered.text if text is None else text,
        rendered.html if html is None else html,
    )


async def list_templates(ctx: Context, caller: Caller) -> list[Template]:
    async with ctx.db.read() as tx:
        return await TemplateRepo(tx, caller.tenant_id).list()


async def get_template(ctx: Context, caller: Caller, name: str) -> Template:
    async with ctx.db.read() as tx:
        return await TemplateRepo(tx, caller.tenant_id).get(name)


async def put_template(
    ctx: Context, caller: Caller, name: str, fields: Mapping[str, Any]
) -> tuple[Template, bool]:
    """Create or replace the template ``name``; returns it and whether it was created."""
    check_name(name)
    source = _source(fields, name)
    async with ctx.db.transaction() as tx:
        template, created = await TemplateRepo(tx, caller.tenant_id).put(
            name, subject=source.subject, text=source.text, html=source.html
        )
        await audit_trail.record(
            tx,
            caller,
            "template.create" if created else "template.update",
            "template",
            template.id,
            name,
            [part for part in _PARTS if part in fields],
        )
    return template, created


async def delete_template(ctx: Context, caller: Caller, name: str) -> None:
    """Delete a template; messages already accepted were rendered and are not affected."""
    async with ctx.db.transaction() as tx:
        repo = TemplateRepo(tx, caller.tenant_id)
        template = await repo.get(name)
        await repo.delete(template)
        await audit_trail.record(tx, caller, "template.delete", "template", template.id, name)
