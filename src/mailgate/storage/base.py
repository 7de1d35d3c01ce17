"""What every repository shares: the transaction type, clocks and error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mailgate.errors import Conflict, FieldError

#: An open transaction. Layers above storage hold it as an opaque value.
Tx = AsyncConnection


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything Mailgate stores is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@asynccontextmanager
async def unique_guard(field: str, message: str) -> AsyncIterator[None]:
    """Turn a uniqueness violation raised inside the block into a 409 naming ``field``."""
    try:
        yield
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "unique" in text or "duplicate" in text:
            raise Conflict(message, errors=[FieldError(field, message)]) from exc
        raise
