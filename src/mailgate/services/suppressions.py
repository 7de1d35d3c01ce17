"""Suppression lists: manage them (list, add, delete, CSV import/export) and apply them when
a message is accepted (docs/deliverability.md).

Reading needs ``email_logs:view``; changing needs ``email_configurations:manage``. Every
change is in the audit log (the address is the object's name; no values are recorded).

At acceptance, :func:`screen` runs on routed messages (after the test-list redirection, so
test addresses are checked too): suppressed recipients are left out of the envelope and
recorded with status ``suppressed`` (:func:`record`); a message whose every recipient is
suppressed is refused with :class:`Suppressed` (422; SMTP ``550 5.7.1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mailgate.domain.suppression import (
    MAX_NOTE,
    Reason,
    Source,
    SuppressedRecipient,
    Suppression,
    export_csv,
    parse_csv,
    split_recipients,
)
from mailgate.errors import FieldError, ValidationFailed
from mailgate.services import audit_trail
from mailgate.services.accounts import check_address
from mailgate.services.context import Caller, Context
from mailgate.storage import apps
from mailgate.storage.base import Tx, utcnow
from mailgate.storage.queue import NewMessage
from mailgate.storage.suppressions import (
    NewSuppression,
    SuppressionRepo,
    entry_json,
    record_suppressed,
)

__all__ = [
    "Screened",
    "Suppressed",
    "add",
    "delete",
    "entry_json",
    "export",
    "import_csv",
    "list_page",
    "mark_results",
    "record",
    "screen",
]


class Suppressed(ValidationFailed):
    """Every recipient of a message is suppressed: nothing was queued. Each error names a
    recipient and the entry that suppresses it."""

    title = "All recipients are suppressed"

    def __init__(self, suppressed: Sequence[SuppressedRecipient], *, field: str) -> None:
        errors = [FieldError(field, f"{s.email} is {s.entry.describe()}") for s in suppressed]
        super().__init__(
            "Every recipient of this message is on the suppression list; nothing was queued. "
            + "; ".join(e.message for e in errors[:5]),
            errors=errors,
        )
        self.suppressed = tuple(suppressed)


async def _app_id(tx: Tx, caller: Caller, name: str | None, field: str = "app") -> str | None:
    if name is None:
        return None
    found = await apps.find_app(tx, caller.tenant_id, name)
    if found is None:
        raise ValidationFailed.field(field, f"no app named {name!r} in this tenant")
    return found.id


async def list_page(
    ctx: Context,
    caller: Caller,
    *,
    limit: int,
    cursor: str | None = None,
    search: str | None = None,
    reason: Reason | None = None,
    app: str | None = None,
) -> tuple[list[Suppression], str | None]:
    """One page of the list, newest first, and the next cursor."""
    async with ctx.db.read() as tx:
        app_id = await _app_id(tx, caller, app)
        items = await SuppressionRepo(tx, caller.tenant_id).page(
            limit=limit + 1, before=cursor, search=search, reason=reason, app_id=app_id
        )
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].id if more and items else None)


async def get(ctx: Context, caller: Caller, entry_id: str) -> Suppression:
    async with ctx.db.read() as tx:
        return await SuppressionRepo(tx, caller.tenant_id).get(entry_id)


def _check_note(note: str | None) -> str | None:
    if note is None:
        return None
    if len(note) > MAX_NOTE or any(c in note for c in "\r\n\x00"):
        raise ValidationFailed.field(
            "note", f"at most {MAX_NOTE} characters on one line (no CR, LF or NUL)"
        )
    return note.strip() or None


def _check_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationFailed.field("expires_at", "give a time zone (e.g. 2027-01-01T00:00:00Z)")
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed.field("expires_at", "must be in the future")
    return expires_at


async def add(
    ctx: Context,
    caller: Caller,
    *,
    email: str,
    reason: Reason = Reason.MANUAL,
    app: str | None = None,
    note: str | None = None,
    expires_at: datetime | None = None,
) -> Suppression:
    """Add one address; 409 naming the entry when it is already listed in that scope."""
    now = utcnow()
    address = check_address(email, "email")
    clean_note = _check_note(note)
    expiry = _check_expiry(expires_at, now)
    async with ctx.db.transaction() as tx:
        app_id = await _app_id(tx, caller, app)
        repo = SuppressionRepo(tx, caller.tenant_id)
        entry_id = await repo.create(
            NewSuppression(
                email=address,
                reason=reason,
                source=Source.API,
                app_id=app_id,
                note=clean_note,
                expires_at=expiry,
                created_by=caller.actor,
            ),
            now=now,
        )
        await audit_trail.record(
            tx, caller, "suppression.create", "suppression", entry_id, address, ["email", "reason"]
        )
        return await repo.get(entry_id)


async def delete(ctx: Context, caller: Caller, entry_id: str) -> None:
    """Remove one entry: the address may be sent to again (in that scope)."""
    async with ctx.db.transaction() as tx:
        entry = await SuppressionRepo(tx, caller.tenant_id).delete(entry_id)
        await audit_trail.record(
            tx, caller, "suppression.delete", "suppression", entry.id, entry.email, []
        )


async def export(ctx: Context, caller: Caller) -> str:
    """The whole list as CSV (oldest first)."""
    async with ctx.db.read() as tx:
        return export_csv(await SuppressionRepo(tx, caller.tenant_id).all())


@dataclass(frozen=True, slots=True)
class ImportCounts:
    created: int
    updated: int


async def import_csv(ctx: Context, caller: Caller, text: str) -> ImportCounts:
    """Add (or replace, same address and scope) every row of a CSV; all rows or none."""
    now = utcnow()
    rows = parse_csv(text)
    checked = []
    for row in rows:
        address = check_address(row.email, f"line {row.line}: email")
        if row.expires_at is not None and row.expires_at <= now:
            raise ValidationFailed.field(f"line {row.line}: expires_at", "must be in the future")
        checked.append((row, address))
    created = updated = 0
    async with ctx.db.transaction() as tx:
        repo = SuppressionRepo(tx, caller.tenant_id)
        app_ids: dict[str, str | None] = {}
        for row, address in checked:
            if row.app is not None and row.app not in app_ids:
                app_ids[row.app] = await _app_id(tx, caller, row.app, f"line {row.line}: app")
            new = NewSuppression(
                email=address,
                reason=row.reason,
                source=Source.IMPORT,
                app_id=app_ids[row.app] if row.app is not None else None,
                note=row.note,
                expires_at=row.expires_at,
                created_by=caller.actor,
            )
            if await repo.upsert(new, now=now):
                created += 1
            else:
                updated += 1
        await audit_trail.record(
            tx, caller, "suppression.import", "suppression", None, f"{len(checked)} rows", ["email"]
        )
    return ImportCounts(created=created, updated=updated)


# Acceptance ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screened:
    """Messages with their suppressed recipients taken out of the envelope.

    ``kept`` holds the messages that still have a recipient; ``suppressed`` maps a message
    id to its suppressed recipients; ``refused`` maps the id of a message whose every
    recipient is suppressed to the error that refuses it.
    """

    kept: tuple[NewMessage, ...]
    suppressed: Mapping[str, tuple[SuppressedRecipient, ...]]
    refused: Mapping[str, Suppressed]


async def screen(
    ctx: Context,
    tenant_id: str,
    items: Sequence[NewMessage],
    *,
    now: datetime,
    field: str = "to",
) -> Screened:
    """Take suppressed recipients out of routed messages (one query for all of them)."""
    if not items:
        return Screened(kept=(), suppressed={}, refused={})
    async with ctx.db.read() as tx:
        entries = await SuppressionRepo(tx, tenant_id).matching(
            (r for m in items for r in m.recipients), (m.app_id for m in items)
        )
    if not entries:
        return Screened(kept=tuple(items), suppressed={}, refused={})
    kept: list[NewMessage] = []
    suppressed: dict[str, tuple[SuppressedRecipient, ...]] = {}
    refused: dict[str, Suppressed] = {}
    for message in items:
        remaining, left_out = split_recipients(
            message.recipients, entries, app_id=message.app_id, now=now
        )
        if not left_out:
            kept.append(message)
        elif not remaining:
            refused[message.id] = Suppressed(
                left_out, field="test_list" if message.redirected else field
            )
        else:
            suppressed[message.id] = left_out
            kept.append(replace(message, recipients=remaining))
    return Screened(kept=tuple(kept), suppressed=suppressed, refused=refused)


def suppressed_json(suppressed: Sequence[SuppressedRecipient]) -> list[dict[str, Any]]:
    """What an accepted message's answer says about its suppressed recipients."""
    return [{"email": s.email, "suppression": entry_json(s.entry)} for s in suppressed]


def mark_results(results: list[dict[str, Any]], screened: Screened) -> None:
    """Batch results: an item whose recipients are all suppressed becomes its 422, and
    the others name their suppressed recipients."""
    for index, result in enumerate(results):
        refused = screened.refused.get(result.get("id", ""))
        if refused is not None:
            results[index] = {
                "index": result["index"],
                "status": refused.status,
                "detail": refused.detail,
                "errors": [{"field": e.field, "message": e.message} for e in refused.errors],
            }
        elif result.get("id") in screened.suppressed:
            result["suppressed"] = suppressed_json(screened.suppressed[result["id"]])


async def record(
    tx: Tx, items: Sequence[NewMessage], screened: Screened | None, *, now: datetime
) -> None:
    """Record the suppressed recipients of ``items`` (in the transaction that enqueues
    them): recipient rows with status ``suppressed`` and ``message.suppressed`` events."""
    if screened is None or not screened.suppressed:
        return
    for message in items:
        left_out = screened.suppressed.get(message.id)
        if left_out:
            await record_suppressed(
                tx,
                message.tenant_id,
                message_id=message.id,
                rfc_message_id=message.message_id,
                first_position=len(message.recipients),
                suppressed=left_out,
                now=now,
            )


async def check_rcpt(ctx: Context, caller: Caller, address: str) -> Suppression | None:
    """The entry that suppresses an SMTP ``RCPT TO`` address, if one does.

    At RCPT time only the app bound to the token is known, not the stage (a header). When
    one of that app's test lists is active the address may be redirected, not sent to, so
    it is not refused here; the recipients are checked when the message is accepted
    (:func:`screen`).
    """
    app_id = caller.principal.app_id
    now = utcnow()
    async with ctx.db.read() as tx:
        if app_id is not None:
            bound = await apps.get_app_by_id(tx, caller.tenant_id, app_id)
            # The stage is not known before DATA: any active list may redirect the mail.
            if any(t.active for t in (bound.test_list, *bound.stage_lists.values())):
                return None
        entries = await SuppressionRepo(tx, caller.tenant_id).matching([address], [app_id])
    _, left_out = split_recipients([address], entries, app_id=app_id, now=now)
    return left_out[0].entry if left_out else None
