"""The hot path's statements, built once at import.

SQLAlchemy builds a statement object and its cache key again on every call of code that
writes ``update(…).where(…)`` inline; these are built here once, with bound parameters, and
executed with a dict of values. For SQLite's writer thread (store/sqlite_writer.py) they are
also compiled once to SQL text with named parameters, run on the stdlib driver directly.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Insert, Select, Update

from ..core.audit import AuditEvent
from ..core.sessions import Rotation, Session
from ..core.users import User
from .tables import audit_events, sessions, users

_c = sessions.c
SESSION_COLUMNS = tuple(column.name for column in sessions.columns)
# A new session has no marks yet (their column defaults); only a rotation writes them. So a
# login also works against the schema before revision 0005, during a rolling upgrade.
_MARK_COLUMNS = ("settled_generation", "mark_generation", "mark_at")
NEW_SESSION_COLUMNS = tuple(name for name in SESSION_COLUMNS if name not in _MARK_COLUMNS)
AUDIT_COLUMNS = (
    "at",
    "kind",
    "user_id",
    "username",
    "sid",
    "address",
    "user_agent",
    "reason",
    "count",
)

# The epoch of the session's user (core/epochs.py): a session of an older one is ended, and a
# deleted user's (no row, NULL) too. One primary-key lookup, whatever the session count.
USER_EPOCH = select(users.c.epoch).where(users.c.id == _c.user_id).scalar_subquery()

# When a rotation moves the marks (core.sessions.advance_marks): the mark is unset or older
# than the window. Right-hand sides of an UPDATE read the row as it was before it.
_MARK_MOVES = or_(_c.mark_at.is_(None), _c.mark_at < bindparam("mark_before"))

# Rotation: one conditional UPDATE … RETURNING (docs/design.md §2 "Atomicity").
ROTATE: Update = (
    update(sessions)
    .where(
        _c.sid == bindparam("b_sid"),
        _c.generation == bindparam("expected_generation"),
        _c.current_hash == bindparam("expected_hash"),
        _c.revoked_at.is_(None),
        _c.idle_expires_at > bindparam("now"),
        _c.absolute_expires_at > bindparam("now"),
        _c.epoch == USER_EPOCH,
    )
    .values(
        generation=bindparam("new_generation"),
        current_hash=bindparam("new_hash"),
        previous_hash=bindparam("expected_hash"),
        rotation_nonce=bindparam("nonce"),
        rotated_at=bindparam("now"),
        last_used_at=bindparam("now"),
        idle_expires_at=bindparam("new_idle_expires_at"),
        settled_generation=case((_MARK_MOVES, _c.mark_generation), else_=_c.settled_generation),
        mark_generation=case((_MARK_MOVES, _c.generation), else_=_c.mark_generation),
        mark_at=case((_MARK_MOVES, _c.rotated_at), else_=_c.mark_at),
    )
    .returning(*sessions.columns)
)
INSERT_SESSION: Insert = sessions.insert()
INSERT_AUDIT: Insert = audit_events.insert()


@dataclasses.dataclass(frozen=True)
class Positional:
    """A statement compiled once for asyncpg: its SQL (``$n`` parameters) and the names of
    the values in their order."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def compile(cls, statement: Update | Select[Any]) -> Positional:
        compiled = statement.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
        return cls(str(compiled), tuple(compiled.positiontup or ()))

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def _rotate_audited() -> Select[Any]:
    """The rotation and its audit row in one statement (PostgreSQL: a data-modifying CTE, one
    atomic statement): the row is inserted only if the rotation matched."""
    rotated = ROTATE.cte("rotated")
    by_name = {"user_id": rotated.c.user_id, "sid": rotated.c.sid}
    values = [
        by_name.get(name, bindparam("audit_" + name, type_=audit_events.c[name].type))
        for name in AUDIT_COLUMNS
    ]
    audited = audit_events.insert().from_select(list(AUDIT_COLUMNS), select(*values))
    return select(rotated).add_cte(audited.cte("audited"))


PG_ROTATE = Positional.compile(ROTATE)
PG_ROTATE_AUDITED = Positional.compile(_rotate_audited())

_SQLITE = sqlite.dialect(paramstyle="named")
_ROTATE_SQL = str(ROTATE.compile(dialect=_SQLITE))
_INSERT_SESSION_SQL = str(INSERT_SESSION.compile(dialect=_SQLITE, column_keys=NEW_SESSION_COLUMNS))
_INSERT_AUDIT_SQL = str(INSERT_AUDIT.compile(dialect=_SQLITE, column_keys=AUDIT_COLUMNS))


def rotation_values(rotation: Rotation) -> dict[str, Any]:
    return {
        "b_sid": rotation.sid,
        "expected_generation": rotation.expected_generation,
        "expected_hash": rotation.expected_hash,
        "now": rotation.now,
        "new_generation": rotation.new_generation,
        "new_hash": rotation.new_hash,
        "nonce": rotation.nonce,
        "new_idle_expires_at": rotation.idle_expires_at,
        "mark_before": rotation.now - rotation.grace,
    }


def audit_rows(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    return [
        {
            "at": e.at,
            "kind": e.kind.value,
            "user_id": e.user_id,
            "username": e.username,
            "sid": e.sid,
            "address": e.address,
            "user_agent": e.user_agent[:512] if e.user_agent else None,
            "reason": e.reason,
            "count": e.count,
        }
        for e in events
    ]


def user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "username_key": user.key,
        "password_hash": user.password_hash,
        "scope": user.scope,
        "created_at": user.created_at,
        "disabled_at": user.disabled_at,
        "epoch": user.epoch,
        "not_before": user.not_before,
    }


def session_values(session: Session) -> dict[str, Any]:
    """The columns of a new session's row."""
    return {name: getattr(session, name) for name in NEW_SESSION_COLUMNS}


def session_from(values: Iterable[Any]) -> Session:
    """A session from a ``RETURNING`` row of :data:`SESSION_COLUMNS`."""
    row = dict(zip(SESSION_COLUMNS, values, strict=True))
    for name in ("current_hash", "previous_hash", "rotation_nonce"):
        if row[name] is not None:
            row[name] = bytes(row[name])
    return Session(**{field.name: row[field.name] for field in dataclasses.fields(Session)})


# --- on the SQLite writer's connection (inside its group transaction) ----------------------


def sqlite_rotate(
    connection: sqlite3.Connection, values: dict[str, Any], audit: list[dict[str, Any]]
) -> Session | None:
    """The rotation and, if it matched, its audit row (the session's ids filled in)."""
    row = connection.execute(_ROTATE_SQL, values).fetchone()
    if row is None:
        return None
    session = session_from(row)
    for event in audit:
        event.update(user_id=session.user_id, sid=session.sid)
    if audit:
        connection.executemany(_INSERT_AUDIT_SQL, audit)
    return session


def sqlite_add_session(
    connection: sqlite3.Connection, values: dict[str, Any], audit: list[dict[str, Any]]
) -> None:
    connection.execute(_INSERT_SESSION_SQL, values)
    if audit:
        connection.executemany(_INSERT_AUDIT_SQL, audit)
