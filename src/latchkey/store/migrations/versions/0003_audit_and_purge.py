"""Audit trail; indexes for the revocation feed and the background purge.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Additive only (a new table and new indexes), so instances of the previous release keep
working while it is applied during a rolling upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("sid", sa.String(32), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_user_id_at", "audit_events", ["user_id", "at"])
    op.create_index("ix_sessions_revoked_at", "sessions", ["revoked_at"])
    op.create_index("ix_sessions_idle_expires_at", "sessions", ["idle_expires_at"])
    op.create_index("ix_sessions_absolute_expires_at", "sessions", ["absolute_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_absolute_expires_at", "sessions")
    op.drop_index("ix_sessions_idle_expires_at", "sessions")
    op.drop_index("ix_sessions_revoked_at", "sessions")
    op.drop_table("audit_events")
