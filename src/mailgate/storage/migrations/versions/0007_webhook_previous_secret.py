"""Webhook secret rotation: until when the previous secret still signs deliveries

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:30:00.000000

The previous secret itself is sealed with the current one in ``webhooks.secrets`` (so key
rotation re-seals both); this column says until when deliveries also carry its signature.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhooks",
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("webhooks", "previous_secret_expires_at")
