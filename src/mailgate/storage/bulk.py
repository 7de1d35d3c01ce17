"""Driver-level bulk statements for the hot path (enqueue, finish).

SQLAlchemy's per-row parameter processing costs more than the database work itself when a
worker records hundreds of outcomes a second, so the queue's bulk writes go to the DBAPI
driver with ``executemany`` (sqlite3's C loop; psycopg's pipeline). Values are converted
here exactly as SQLAlchemy would store them: on SQLite, timestamps as naive UTC text in
SQLAlchemy's format (so comparisons and reads stay consistent) and booleans as 0/1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mailgate.storage.base import Tx


class Bulk:
    """Statement text and value conversion for one dialect."""

    def __init__(self, tx: Tx | None, *, dialect: str | None = None) -> None:
        self._tx = tx
        self.sqlite = (dialect or (tx.dialect.name if tx is not None else "")) == "sqlite"
        self.mark = "?" if self.sqlite else "%s"

    @property
    def tx(self) -> Tx:
        if self._tx is None:
            raise RuntimeError("this Bulk only converts values; it has no transaction")
        return self._tx

    def time(self, value: datetime | None) -> Any:
        if value is None or not self.sqlite:
            return value
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        # The same text as strftime("%Y-%m-%d %H:%M:%S.%f"), several times cheaper: the
        # first 26 characters of the ISO form, before its "+00:00".
        return value.isoformat(" ", "microseconds")[:26]

    def flag(self, value: bool) -> Any:
        return int(value) if self.sqlite else value

    def json(self, value: Any) -> Any:
        return None if value is None else json.dumps(value)

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def insert_sql(self, table: str, columns: Sequence[str]) -> str:
        # Table and column names are constants of this package, never input.
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({self.marks(len(columns))})"  # noqa: S608

    def update_sql(self, table: str, set_columns: Sequence[str], where: str) -> str:
        """``UPDATE table SET c1 = ?, … WHERE <where>``; each row gives the SET values, then
        the values of the placeholders in ``where`` (written with ``{}`` for each one). A
        set column written as ``c = <expression with one {}>`` is assigned that expression."""
        assignments = ", ".join(
            c.format(self.mark) if "{}" in c else f"{c} = {self.mark}" for c in set_columns
        )
        condition = where.format(*([self.mark] * where.count("{}")))
        return f"UPDATE {table} SET {assignments} WHERE {condition}"  # noqa: S608 - constants

    async def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self.tx.exec_driver_sql(self.insert_sql(table, columns), rows)

    async def update(
        self, table: str, set_columns: Sequence[str], where: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """:meth:`update_sql` run for every row."""
        if rows:
            await self.tx.exec_driver_sql(self.update_sql(table, set_columns, where), rows)
