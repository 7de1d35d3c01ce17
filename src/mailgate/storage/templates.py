"""Message templates of a tenant: Jinja sources for subject, text and HTML, by name.

A template is written whole (``PUT``): each write replaces the three sources and adds one
to ``version``, in one statement, so concurrent writers each get their own version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.tables import templates


@dataclass(frozen=True, slots=True)
class Template:
    """A stored template; ``text`` or ``html`` may be absent, ``subject`` never is."""

    id: str
    tenant_id: str
    name: str
    subject: str
    text: str | None
    html: str | None
    version: int
    created_at: datetime
    updated_at: datetime


def _template(row: Any) -> Template:
    return Template(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        subject=row.subject,
        text=row.text,
        html=row.html,
        version=row.version,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


class TemplateRepo:
    """Template rows of one tenant."""

    def __init__(self, tx: Tx, tenant_id: str) -> None:
        self.tx = tx
        self.tenant_id = tenant_id

    async def list(self) -> list[Template]:
        rows = await self.tx.execute(
            select(templates)
            .where(templates.c.tenant_id == self.tenant_id)
            .order_by(templates.c.name)
        )
        return [_template(r) for r in rows]

    async def find(self, name: str) -> Template | None:
        row = (
            await self.tx.execute(
                select(templates).where(
                    templates.c.tenant_id == self.tenant_id, templates.c.name == name
                )
            )
        ).first()
        return _template(row) if row else None

    async def get(self, name: str) -> Template:
        found = await self.find(name)
        if found is None:
            raise NotFound(f"No template {name!r}.")
        return found

    async def by_names(self, names: Iterable[str]) -> dict[str, Template]:
        """The templates among ``names`` that exist, by name (one query)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        rows = await self.tx.execute(
            select(templates).where(
                templates.c.tenant_id == self.tenant_id, templates.c.name.in_(wanted)
            )
        )
        return {r.name: _template(r) for r in rows}

    async def put(
        self, name: str, *, subject: str, text: str | None, html: str | None
    ) -> tuple[Template, bool]:
        """Create or replace the template ``name``; returns it and whether it was created.

        Two writers creating the same new name race on the unique constraint: the loser
        gets a 409.
        """
        now = utcnow()
        result = await self.tx.execute(
            update(templates)
            .where(templates.c.tenant_id == self.tenant_id, templates.c.name == name)
            .values(
                subject=subject,
                text=text,
                html=html,
                version=templates.c.version + 1,
                updated_at=now,
            )
        )
        created = result.rowcount == 0
        if created:
            async with unique_guard("name", f"The template {name!r} was created meanwhile."):
                await self.tx.execute(
                    insert(templates).values(
                        id=new_id(),
                        tenant_id=self.tenant_id,
                        name=name,
                        subject=subject,
                        text=text,
                        html=html,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return await self.get(name), created

    async def delete(self, template: Template) -> None:
        await self.tx.execute(delete(templates).where(templates.c.id == template.id))
