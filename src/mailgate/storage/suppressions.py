"""Suppression list rows: search, add, import, delete, and the look-up at acceptance.

Addresses are stored lower-cased (:func:`mailgate.domain.suppression.normalise_email`);
``scope`` is ``*`` for a tenant-wide entry and the app id for an app's own, so one address
has at most one entry per scope (``uq_suppressions_address``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailgate.domain.delivery import RecipientStatus
from mailgate.domain.ids import new_id
from mailgate.domain.suppression import (
    TENANT_SCOPE,
    Reason,
    Source,
    SuppressedRecipient,
    Suppression,
    normalise_email,
    scope_of,
)
from mailgate.domain.webhooks import WebhookEvent, event_payload
from mailgate.errors import Conflict, FieldError, NotFound
from mailgate.storage.base import Tx, as_utc
from mailgate.storage.tables import apps, message_recipients, suppressions
from mailgate.storage.tenant_events import emit, subscribers, tenant_slug

_S = suppressions
_COLUMNS = (*_S.c, apps.c.name.label("app_name"))


def _entry(row: Any) -> Suppression:
    created = as_utc(row.created_at)
    assert created is not None
    return Suppression(
        id=row.id,
        tenant_id=row.tenant_id,
        email=row.email,
        reason=Reason(row.reason),
        source=Source(row.source),
        created_at=created,
        app_id=row.app_id,
        app=row.app_name,
        source_message_id=row.source_message_id,
        note=row.note,
        expires_at=as_utc(row.expires_at),
    )


def _select() -> Any:
    return select(*_COLUMNS).select_from(_S.outerjoin(apps, apps.c.id == _S.c.app_id))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class NewSuppression:
    email: str
    reason: Reason
    source: Source
    app_id: str | None = None
    source_message_id: str | None = None
    note: str | None = None
    expires_at: datetime | None = None
    created_by: str | None = None


class SuppressionRepo:
    """One tenant's suppression list inside one transaction."""

    def __init__(self, tx: Tx, tenant_id: str) -> None:
        self.tx = tx
        self.tenant_id = tenant_id

    async def page(
        self,
        *,
        limit: int,
        before: str | None = None,
        search: str | None = None,
        reason: Reason | None = None,
        app_id: str | None = None,
    ) -> list[Suppression]:
        """Newest first; ``before`` is the last id of the previous page; ``search`` is a
        case-insensitive part of the address."""
        query = _select().where(_S.c.tenant_id == self.tenant_id).order_by(_S.c.id.desc())
        if before:
            query = query.where(_S.c.id < before)
        if search:
            query = query.where(_S.c.email.like(_like(search.strip().lower()), escape="\\"))
        if reason is not None:
            query = query.where(_S.c.reason == reason.value)
        if app_id is not None:
            query = query.where(_S.c.app_id == app_id)
        return [_entry(r) for r in await self.tx.execute(query.limit(limit))]

    async def all(self) -> list[Suppression]:
        query = _select().where(_S.c.tenant_id == self.tenant_id).order_by(_S.c.id)
        return [_entry(r) for r in await self.tx.execute(query)]

    async def get(self, entry_id: str) -> Suppression:
        row = (
            await self.tx.execute(
                _select().where(_S.c.tenant_id == self.tenant_id, _S.c.id == entry_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"No suppression {entry_id!r}.")
        return _entry(row)

    async def find(self, email: str, app_id: str | None) -> Suppression | None:
        row = (
            await self.tx.execute(
                _select().where(
                    _S.c.tenant_id == self.tenant_id,
                    _S.c.scope == scope_of(app_id),
                    _S.c.email == normalise_email(email),
                )
            )
        ).first()
        return _entry(row) if row is not None else None

    async def matching(
        self, emails: Iterable[str], app_ids: Iterable[str | None]
    ) -> list[Suppression]:
        """Entries for ``emails`` that are tenant-wide or belong to one of ``app_ids``
        (expired ones included: the caller decides with the time it holds)."""
        wanted = sorted({normalise_email(e) for e in emails})
        scopes = sorted({TENANT_SCOPE, *(a for a in app_ids if a)})
        out: list[Suppression] = []
        for start in range(0, len(wanted), 500):
            query = _select().where(
                _S.c.tenant_id == self.tenant_id,
                _S.c.email.in_(wanted[start : start + 500]),
                _S.c.scope.in_(scopes),
            )
            out += [_entry(r) for r in await self.tx.execute(query)]
        return out

    def _values(self, new: NewSuppression, *, now: datetime) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "scope": scope_of(new.app_id),
            "app_id": new.app_id,
            "email": normalise_email(new.email),
            "reason": new.reason.value,
            "source": new.source.value,
            "source_message_id": new.source_message_id,
            "note": new.note,
            "created_by": new.created_by,
            "created_at": now,
            "expires_at": new.expires_at,
        }

    async def _insert(self, new: NewSuppression, *, now: datetime) -> str | None:
        """Insert the entry in a savepoint; None when another transaction listed the
        address in that scope first (the unique constraint)."""
        entry_id = new_id()
        try:
            async with self.tx.begin_nested():
                await self.tx.execute(insert(_S).values(id=entry_id, **self._values(new, now=now)))
        except IntegrityError:
            return None
        return entry_id

    def _conflict(self, held: Suppression | None, email: str) -> Conflict:
        named = f" (entry {held.id})" if held else ""
        message = f"{normalise_email(email)} is already suppressed in this scope{named}"
        return Conflict(message, errors=[FieldError("email", message)])

    async def create(self, new: NewSuppression, *, now: datetime) -> str:
        """A new entry; 409 naming the existing entry when the address is already listed
        in that scope."""
        held = await self.find(new.email, new.app_id)
        if held is not None:
            raise self._conflict(held, new.email)
        entry_id = await self._insert(new, now=now)
        if entry_id is None:
            raise self._conflict(await self.find(new.email, new.app_id), new.email)
        return entry_id

    async def upsert(self, new: NewSuppression, *, now: datetime) -> bool:
        """Add the entry, or replace the one held for that address and scope; whether it
        was new."""
        held = await self.find(new.email, new.app_id)
        if held is None and await self._insert(new, now=now) is not None:
            return True
        held = held or await self.find(new.email, new.app_id)
        assert held is not None
        await self.tx.execute(
            update(_S).where(_S.c.id == held.id).values(**self._values(new, now=now))
        )
        return False

    async def add_automatic(self, new: NewSuppression, *, now: datetime) -> Suppression | None:
        """What a bounce, complaint or provider event adds: a new entry, or an expired one
        made current again; None when an active entry already holds the address (it is
        kept as it is, so a manual note or a longer-lived reason is not overwritten)."""
        held = await self.find(new.email, new.app_id)
        if held is not None and held.is_active(now):
            return None
        if held is None:
            inserted = await self._insert(new, now=now)
            if inserted is None:
                return None  # listed by a concurrent transaction just now
            entry_id = inserted
        else:
            entry_id = held.id
            await self.tx.execute(
                update(_S).where(_S.c.id == entry_id).values(**self._values(new, now=now))
            )
        return await self.get(entry_id)

    async def delete(self, entry_id: str) -> Suppression:
        entry = await self.get(entry_id)
        await self.tx.execute(delete(_S).where(_S.c.id == entry_id))
        return entry


def entry_json(entry: Suppression) -> dict[str, Any]:
    """An entry as webhook payloads and API answers show it."""
    return {
        "id": entry.id,
        "email": entry.email,
        "reason": entry.reason.value,
        "source": entry.source.value,
        "app": entry.app,
        "source_message_id": entry.source_message_id,
        "created_at": entry.created_at.isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }


async def record_suppressed(
    tx: Tx,
    tenant_id: str,
    *,
    message_id: str,
    rfc_message_id: str,
    first_position: int,
    suppressed: Sequence[SuppressedRecipient],
    now: datetime,
) -> None:
    """Write the suppressed recipients of a message just enqueued (status ``suppressed``,
    after its deliverable recipients) and a ``message.suppressed`` event for each."""
    if not suppressed:
        return
    await tx.execute(
        insert(message_recipients),
        [
            {
                "message_id": message_id,
                "position": first_position + i,
                "email": s.email.lower(),
                "status": RecipientStatus.SUPPRESSED.value,
                "code": None,
                "reply": s.entry.describe()[:2000],
                "updated_at": now,
            }
            for i, s in enumerate(suppressed)
        ],
    )
    hooks = await subscribers(tx, tenant_id, WebhookEvent.SUPPRESSED)
    if not hooks:
        return
    slug = await tenant_slug(tx, tenant_id)
    payloads = []
    for s in suppressed:
        payload = event_payload(
            event_id=new_id(),
            event=WebhookEvent.SUPPRESSED,
            created_at=now,
            tenant=slug,
            message_id=message_id,
            rfc_message_id=rfc_message_id,
            recipient=s.email.lower(),
            outcome=RecipientStatus.SUPPRESSED.value,
            code=None,
            reply=s.entry.describe(),
            attempt=0,
        )
        payload["suppression"] = entry_json(s.entry)
        payloads.append(payload)
    await emit(tx, tenant_id, WebhookEvent.SUPPRESSED, payloads, now=now, hooks=hooks)
