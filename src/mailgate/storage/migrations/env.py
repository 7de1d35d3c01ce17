"""Alembic environment: runs migrations over the connection handed in by Mailgate."""

from __future__ import annotations

from alembic import context

from mailgate.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - Mailgate always hands a connection in
    raise RuntimeError("Run migrations through `mailgate db upgrade`.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
