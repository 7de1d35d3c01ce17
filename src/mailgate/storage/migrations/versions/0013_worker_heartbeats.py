"""Worker heartbeats: every process running delivery workers says it is alive

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 12:30:00.000000

``worker_heartbeats`` has one row per process with delivery workers (``mailgate serve`` with
workers, ``mailgate worker``), rewritten every few seconds and deleted when the process
stops; ``/readyz`` and ``/metrics`` count the rows seen recently.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("loops", sa.Integer(), nullable=False),
        sa.Column("claiming", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
