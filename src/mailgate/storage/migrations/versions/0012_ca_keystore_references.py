"""Mail servers may trust the CA certificates of a named "ca" keystore

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 12:30:00.000000

``mail_servers.ca_keystore`` names a keystore of the server's tenant whose certificates are
trusted instead of the inline ``ca_certificates``. An inbox names one in its ``imap``
settings (JSON), which needs no column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mail_servers", sa.Column("ca_keystore", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("mail_servers", "ca_keystore")
