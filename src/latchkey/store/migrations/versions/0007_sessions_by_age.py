"""A user's sessions of one epoch in the order they were opened: the cap on live sessions
per user ends the oldest through this index, reading only the rows past the cap.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Additive (the new index replaces one it extends), so instances of the previous release keep
working while it is applied during a rolling upgrade.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_sessions_user_id_epoch_created_at", "sessions", ["user_id", "epoch", "created_at"]
    )
    op.drop_index("ix_sessions_user_id_epoch", "sessions")


def downgrade() -> None:
    op.create_index("ix_sessions_user_id_epoch", "sessions", ["user_id", "epoch"])
    op.drop_index("ix_sessions_user_id_epoch_created_at", "sessions")
