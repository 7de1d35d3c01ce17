"""Re-encrypting every stored secret with the newest key (``mailgate keys rotate``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update

from mailgate.errors import SecretKeyError
from mailgate.storage.db import Database
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.tables import SECRET_COLUMNS


async def count_secrets(db: Database) -> int:
    """How many sealed values there are (for a progress bar)."""
    total = 0
    async with db.read() as tx:
        for table, column in SECRET_COLUMNS:
            query = select(func.count()).select_from(table).where(table.c[column].is_not(None))
            total += int((await tx.execute(query)).scalar_one())
    return total


async def reseal_all(
    db: Database, box: SecretBox, *, progress: Callable[[int], None] | None = None
) -> int:
    """Open every sealed value with any configured key and seal it with the newest one.

    Each value stays bound to its row. Runs in one transaction: either every secret is
    re-encrypted or none is. Returns how many values were re-encrypted.
    """
    done = 0
    async with db.transaction() as tx:
        for table, column in SECRET_COLUMNS:
            rows = await tx.execute(
                select(table.c.id, table.c[column]).where(table.c[column].is_not(None))
            )
            for row_id, sealed in rows.all():
                context = f"{table.name}:{row_id}:{column}"
                plain = box.open(sealed, context=context)
                await tx.execute(
                    update(table)
                    .where(table.c.id == row_id)
                    .values({column: box.seal(plain, context=context)})
                )
                done += 1
                if progress is not None:
                    progress(1)
    return done


async def verify_keys(db: Database, box: SecretBox) -> None:
    """Open one stored secret of every kind, so a wrong key fails at startup, clearly."""
    async with db.read() as tx:
        for table, column in SECRET_COLUMNS:
            row = (
                await tx.execute(
                    select(table.c.id, table.c[column]).where(table.c[column].is_not(None)).limit(1)
                )
            ).first()
            if row is not None:
                box.open(row[1], context=f"{table.name}:{row[0]}:{column}")


async def undecryptable(db: Database, box: SecretBox) -> list[tuple[str, str, str]]:
    """Every sealed value that no configured key opens: ``(table, row id, reason)``.

    Unlike :func:`verify_keys`, which opens one value of each kind, this opens them all
    (``mailgate doctor``).
    """
    found: list[tuple[str, str, str]] = []
    async with db.read() as tx:
        for table, column in SECRET_COLUMNS:
            rows = await tx.execute(
                select(table.c.id, table.c[column]).where(table.c[column].is_not(None))
            )
            for row_id, sealed in rows.all():
                try:
                    box.open(sealed, context=f"{table.name}:{row_id}:{column}")
                except SecretKeyError as exc:
                    found.append((table.name, str(row_id), str(exc)))
    return found
