"""Per-user revocation epochs: ending every session of a user is one row, at any count.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Additive (new columns with a constant default, a new table, a new index), so instances of
the previous release keep working while it is applied during a rolling upgrade; the index
on ``sessions.user_id`` alone goes, as ``(user_id, epoch)`` serves every query it served.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.add_column("users", sa.Column("not_before", sa.Float, nullable=True))
    op.add_column("users", sa.Column("not_before_reason", sa.String(32), nullable=True))
    op.add_column("sessions", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.add_column("audit_events", sa.Column("count", sa.Integer, nullable=True))
    op.create_index("ix_sessions_user_id_epoch", "sessions", ["user_id", "epoch"])
    op.drop_index("ix_sessions_user_id", "sessions")
    op.create_table(
        "user_revocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("kept_sid", sa.String(32), nullable=True),
        sa.Column("sessions", sa.Integer, nullable=False),
    )
    op.create_index("ix_user_revocations_revoked_at", "user_revocations", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_user_revocations_revoked_at", "user_revocations")
    op.drop_table("user_revocations")
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.drop_index("ix_sessions_user_id_epoch", "sessions")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("count")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("epoch")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("not_before_reason")
        batch.drop_column("not_before")
        batch.drop_column("epoch")
