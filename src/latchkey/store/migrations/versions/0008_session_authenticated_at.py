"""Sessions remember the last proof of the password (a login or a re-authentication): the
access tokens' ``auth_time``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Additive only (a nullable column; NULL reads as the session's creation, its login), so
instances of the previous release keep working while it is applied during a rolling upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("authenticated_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("authenticated_at")
