"""The durable queue on SQLite: one host, writers serialised by the database.

A claim runs inside ``BEGIN IMMEDIATE`` (see :class:`mailgate.storage.db.Database`), which
already keeps every other writer out, so no statement locks rows; there is no LISTEN, and
workers of other processes find new mail by polling.
"""

from __future__ import annotations

from mailgate.storage.queue_sql import SqlQueue


class SqliteQueue(SqlQueue):
    dialect = "sqlite"
