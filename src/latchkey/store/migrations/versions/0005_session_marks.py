"""Sessions: marks that bound when older refresh-token generations stopped being current.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Additive only (three columns with defaults), so instances of the previous release keep
working while it is applied during a rolling upgrade. Existing rows start with no mark: an
older generation is then bounded by the last rotation alone until the session rotates again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sessions", sa.Column("settled_generation", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column(
        "sessions", sa.Column("mark_generation", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("sessions", sa.Column("mark_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("mark_at")
        batch.drop_column("mark_generation")
        batch.drop_column("settled_generation")
