"""The SQL schema (SQLAlchemy Core). Alembic migrations under ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("username_key", String(255), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("scope", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("disabled_at", Float, nullable=True),
    # Every session of the user at once (core/epochs.py): the epoch goes up by one, and
    # sessions of an older epoch are ended, whatever their number.
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("not_before", Float, nullable=True),  # when that last happened
    Column("not_before_reason", String(32), nullable=True),
)

# One row per session, whatever the number of rotations (docs/design.md §2: storage is O(1)).
sessions = Table(
    "sessions",
    metadata,
    Column("sid", String(32), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("current_hash", LargeBinary(32), nullable=False),
    Column("previous_hash", LargeBinary(32), nullable=True),
    Column("rotation_nonce", LargeBinary(16), nullable=True),
    Column("rotated_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=False),
    Column("idle_expires_at", Float, nullable=False),
    Column("absolute_expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_reason", String(32), nullable=True),
    Column("scope", Text, nullable=False, server_default=""),
    Column("user_agent", String(512), nullable=True),
    Column("address", String(64), nullable=True),
    # Bounds on when older generations stopped being current (core/sessions.py advance_marks).
    Column("settled_generation", Integer, nullable=False, server_default="0"),
    Column("mark_generation", Integer, nullable=False, server_default="0"),
    Column("mark_at", Float, nullable=True),
    Column("epoch", Integer, nullable=False, server_default="0"),  # its user's, when opened
    # The last password proof (login or POST /auth/reauthenticate); NULL: created_at.
    Column("authenticated_at", Float, nullable=True),
    # A user's sessions of one epoch, oldest first: the cap on sessions per user.
    Index("ix_sessions_user_id_epoch_created_at", "user_id", "epoch", "created_at"),
    # The deny-list feed (revoked since …) and the purge (expired or revoked before …).
    Index("ix_sessions_revoked_at", "revoked_at"),
    Index("ix_sessions_idle_expires_at", "idle_expires_at"),
    Index("ix_sessions_absolute_expires_at", "absolute_expires_at"),
)

# One row per mass revocation (core/epochs.py EpochRevocation): the feed that tells every
# instance's deny-list of a user's cutoff, and what the purge follows to delete the ended
# sessions in batches; kept one access-token lifetime, then purged with those sessions.
user_revocations = Table(
    "user_revocations",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("user_id", String(32), nullable=False),
    Column("epoch", Integer, nullable=False),  # sessions of an older epoch ended
    Column("revoked_at", Float, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("kept_sid", String(32), nullable=True),
    Column("sessions", Integer, nullable=False),
    Index("ix_user_revocations_revoked_at", "revoked_at"),
)

# Signing keys, shared by every instance; the private key is sealed (core/sealing.py).
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("sealed_private_key", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("activates_at", Float, nullable=False),
    Column("retired_at", Float, nullable=True),
)

# The audit trail (core/audit.py); purged after LATCHKEY_AUDIT_RETENTION.
audit_events = Table(
    "audit_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("username", String(255), nullable=True),
    Column("sid", String(32), nullable=True),
    Column("address", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("reason", String(64), nullable=True),
    Column("count", Integer, nullable=True),  # sessions ended by a mass revocation
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_user_id_at", "user_id", "at"),
)

# Registered clients (resource servers that introspect tokens); only a hash of each secret.
clients = Table(
    "clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
)
