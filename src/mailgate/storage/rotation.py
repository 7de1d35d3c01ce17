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
    db: Database,
    box: SecretBox,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = 200,
) -> int:
    """Seal every value not sealed with the newest key again, with the newest key.

    Safe while the API and workers run: each value stays bound to its row; values are
    re-encrypted in short transactions (``batch`` rows each), so writers are never held up
    for long; and each update is a compare-and-set on the old ciphertext, so a secret
    changed meanwhile (already sealed with the newest key) is never overwritten with its
    previous value. Values already current are skipped. Returns how many were re-encrypted.
    """
    done = 0
    for table, column in SECRET_COLUMNS:
        async with db.read() as tx:
            rows = (
                await tx.execute(
                    select(table.c.id, table.c[column]).where(table.c[column].is_not(None))
                )
            ).all()
        stale = [(row_id, sealed) for row_id, sealed in rows if not box.is_current(sealed)]
        if progress is not None and len(rows) > len(stale):
            progress(len(rows) - len(stale))
        for start in range(0, len(stale), batch):
            async with db.transaction() as tx:
                for row_id, sealed in stale[start : start + batch]:
                    context = f"{table.name}:{row_id}:{column}"
                    plain = box.open(sealed, context=context)
                    result = await tx.execute(
                        update(table)
                        .where(table.c.id == row_id, table.c[column] == sealed)
                        .values({column: box.seal(plain, context=context)})
                    )
                    done += int(result.rowcount or 0)
            if progress is not None:
                progress(len(stale[start : start + batch]))
    return done


async def count_stale(db: Database, box: SecretBox) -> int:
    """How many sealed values were not sealed with the newest key."""
    stale = 0
    async with db.read() as tx:
        for table, column in SECRET_COLUMNS:
            rows = await tx.execute(select(table.c[column]).where(table.c[column].is_not(None)))
            stale += sum(1 for (sealed,) in rows if not box.is_current(sealed))
    return stale


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
