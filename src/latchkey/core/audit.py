"""Audit events (OWASP ASVS v5 V16.2, V16.3): who did what to which session, from where.

An :class:`AuditEvent` is written as a structured log line (logger ``latchkey.audit``) and as a
row of the audit table, in the same transaction as the change it records where there is one.
It never holds a secret: no password, no token, no hash — and for a failed login on an
unknown account not even the name that was typed (it may be a password typed in the wrong
field); the client's address and the reason tell the story.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AuditKind(enum.StrEnum):
    LOGIN_OK = "login_ok"
    LOGIN_FAILED = "login_failed"
    REFRESH = "refresh"
    REUSE_DETECTED = "reuse_detected"
    SESSION_REVOKED = "session_revoked"
    SESSIONS_REVOKED = "sessions_revoked"  # every session of a user at once, with the count
    REAUTHENTICATED = "reauthenticated"  # the password proved again in a session
    REAUTHENTICATION_FAILED = "reauthentication_failed"
    PASSWORD_CHANGED = "password_changed"
    USER_REGISTERED = "user_registered"
    USER_CREATED = "user_created"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_DELETED = "user_deleted"
    USER_UPDATED = "user_updated"  # renamed or scope changed (`latchkey user update`)
    CLIENT_ADDED = "client_added"  # a resource server registered (`latchkey clients add`)
    CLIENT_REMOVED = "client_removed"
    KEY_ROTATED = "key_rotated"  # a new signing key (`latchkey keys rotate`, or on schedule)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: float
    kind: AuditKind
    user_id: str | None = None
    username: str | None = None
    sid: str | None = None
    address: str | None = None
    user_agent: str | None = None
    reason: str | None = None  # why: a revocation reason, why a login failed, who acted
    count: int | None = None  # how many sessions a mass revocation ended
    id: int | None = None  # assigned by the store

    def log_fields(self) -> dict[str, str | float]:
        """The fields of the log line (``extra=``), without the empty ones."""
        fields: dict[str, str | float | None] = {
            "audit": self.kind.value,
            "user_id": self.user_id,
            "username": self.username,
            "sid": self.sid,
            "address": self.address,
            "reason": self.reason,
            "count": self.count,
        }
        return {k: v for k, v in fields.items() if v is not None}
