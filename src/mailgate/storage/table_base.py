"""The schema's shared metadata and column helpers, used by every table module."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 26


def _id() -> Column[str]:
    return Column("id", String(ID), primary_key=True)


def _tenant() -> Column[str]:
    return Column(
        "tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


def _stamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    ]


__all__ = ["ID", "_id", "_stamps", "_tenant", "metadata"]
