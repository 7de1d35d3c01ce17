"""Test lists per app and stage, naming users as well as addresses; account descriptions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 12:30:00.000000

An app had one test list (``apps.test_list``, ``apps.test_list_active``) that redirected its
mail on every stage, production included. Lists now live in ``test_lists``, one per app and
stage (``stage`` "" holds the list for mail that names no stage). Each app's list becomes
its list on every stage of its tenant except ``production``, and stays the list for mail
that names no stage; production mail goes to its real recipients. A list may name users of
the tenant (``users``: user ids). ``email_accounts.description`` is new (empty).

Downgrade: each app gets back one list: the first active one among its list for mail that
names no stage and its stages' lists (by stage name), else the list for no stage, with its
users replaced by their addresses now (deleted users are left out).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_PRODUCTION = "production"


def _json(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value]


def _test_lists() -> Any:
    return sa.table(
        "test_lists",
        sa.column("app_id", sa.String()),
        sa.column("stage", sa.String()),
        sa.column("tenant_id", sa.String()),
        sa.column("addresses", sa.JSON()),
        sa.column("users", sa.JSON()),
        sa.column("active", sa.Boolean()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    op.create_table(
        "test_lists",
        sa.Column("app_id", sa.String(length=26), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("users", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_test_lists_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_test_lists_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_id", "stage", name=op.f("pk_test_lists")),
    )
    op.create_index("ix_test_lists_tenant", "test_lists", ["tenant_id"])

    bind = op.get_bind()
    now = datetime.now(UTC)
    stages_of: dict[str, list[str]] = {}
    for tenant_id, name in bind.execute(sa.text("SELECT tenant_id, name FROM stages")):
        stages_of.setdefault(tenant_id, []).append(name)
    rows: list[dict[str, Any]] = []
    apps = bind.execute(sa.text("SELECT id, tenant_id, test_list, test_list_active FROM apps"))
    for app_id, tenant_id, addresses, active in apps:
        listed = _json(addresses)
        if not listed and not active:
            continue
        keys = ["", *sorted(s for s in stages_of.get(tenant_id, []) if s != _PRODUCTION)]
        rows.extend(
            {
                "app_id": app_id,
                "stage": stage,
                "tenant_id": tenant_id,
                "addresses": listed,
                "users": [],
                "active": bool(active),
                "updated_at": now,
            }
            for stage in keys
        )
    if rows:
        op.bulk_insert(_test_lists(), rows)
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): batch mode would copy ``apps`` and
    # drop the old table, which with foreign keys on deletes the rows that cascade from it.
    op.drop_column("apps", "test_list_active")
    op.drop_column("apps", "test_list")
    op.add_column(
        "email_accounts",
        sa.Column("description", sa.String(length=200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("email_accounts", "description")
    op.add_column(
        "apps", sa.Column("test_list", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    op.add_column(
        "apps",
        sa.Column(
            "test_list_active", sa.Boolean(), nullable=False, server_default=sa.text("false")
        ),
    )
    bind = op.get_bind()
    emails: dict[str, str] = {
        str(i): str(e) for i, e in bind.execute(sa.text("SELECT id, email FROM users"))
    }
    chosen: dict[str, tuple[str, list[str], list[str], bool]] = {}
    rows = bind.execute(
        sa.text("SELECT app_id, stage, addresses, users, active FROM test_lists ORDER BY stage")
    )
    for app_id, stage, addresses, users, active in rows:
        candidate = (stage, _json(addresses), _json(users), bool(active))
        held = chosen.get(app_id)
        # "" sorts first: the list for no stage unless a later one is active and it is not.
        if held is None or (active and not held[3]):
            chosen[app_id] = candidate
    for app_id, (_, addresses, users, active) in chosen.items():
        listed = list(addresses)
        for user_id in users:
            email = emails.get(user_id)
            if email and email.lower() not in (a.lower() for a in listed):
                listed.append(email)
        bind.execute(
            sa.text(
                "UPDATE apps SET test_list = :addresses, test_list_active = :active WHERE id = :id"
            ).bindparams(sa.bindparam("addresses", type_=sa.JSON())),
            {"addresses": listed, "active": active and bool(listed), "id": app_id},
        )
    op.drop_index("ix_test_lists_tenant", table_name="test_lists")
    op.drop_table("test_lists")
