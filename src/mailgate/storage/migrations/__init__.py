"""Alembic migrations of the Mailgate schema (run on SQLite and PostgreSQL)."""
