"""Tenant policies: sending quotas per tenant and app, retention per final status

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 08:30:00.000000

``tenant_policies`` holds a tenant's messages-per-minute and per-day quota and its retention
per final status; ``app_quotas`` an app's own quota; ``quota_usage`` the accepted-message
counters of the current windows, shared by every process.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.String(26), nullable=False),
        sa.Column("quota_per_minute", sa.Integer(), nullable=True),
        sa.Column("quota_per_day", sa.Integer(), nullable=True),
        sa.Column("retention_days", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_tenant_policies_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_policies"),
    )
    op.create_table(
        "app_quotas",
        sa.Column("app_id", sa.String(26), nullable=False),
        sa.Column("tenant_id", sa.String(26), nullable=False),
        sa.Column("quota_per_minute", sa.Integer(), nullable=True),
        sa.Column("quota_per_day", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_app_quotas_app_id_apps", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_app_quotas_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_id", name="pk_app_quotas"),
    )
    op.create_table(
        "quota_usage",
        sa.Column("scope", sa.String(80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "window_start", name="pk_quota_usage"),
    )


def downgrade() -> None:
    op.drop_table("quota_usage")
    op.drop_table("app_quotas")
    op.drop_table("tenant_policies")
