"""The users table: accounts, and the changes that end their sessions in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.audit import AuditEvent, AuditKind
from ..core.epochs import EpochRevocation
from ..core.errors import Conflict
from ..core.users import User, username_key
from . import statements
from .engine import SqlBase, write_audit
from .sql_epochs import end_epoch
from .tables import sessions, users


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=row.created_at,
        scope=row.scope,
        disabled_at=row.disabled_at,
        epoch=row.epoch,
        not_before=row.not_before,
    )


class SqlUsers(SqlBase):
    async def add_user(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> None:
        values = statements.user_values(user)
        try:
            async with self._begin() as conn:
                await conn.execute(users.insert().values(**values))
                await write_audit(conn, audit)
        except IntegrityError as exc:
            raise Conflict("A user with this name exists already.") from exc

    async def user_by_name(self, username_key: str) -> User | None:
        async with self._begin() as conn:
            row = (
                await conn.execute(select(users).where(users.c.username_key == username_key))
            ).first()
        return None if row is None else _user(row)

    async def user_by_id(self, user_id: str) -> User | None:
        async with self._begin() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        async with self._begin() as conn:
            rows = (await conn.execute(select(users).order_by(users.c.username_key))).all()
        return [_user(row) for row in rows]

    async def has_users(self) -> bool:
        async with self._begin() as conn:
            return (await conn.execute(select(users.c.id).limit(1))).first() is not None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._begin() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    async def change_password(
        self,
        user_id: str,
        password_hash: str,
        now: float,
        *,
        keep_sid: str | None = None,
        audit: Sequence[AuditEvent] = (),
    ) -> EpochRevocation | None:
        """Set the hash and end every session but ``keep_sid``, in one transaction."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )
            if not result.rowcount:
                return None  # unknown user: nothing changed, nothing to audit
            await write_audit(conn, audit)
            return await end_epoch(
                conn, user_id, "password_changed", now, keep_sid=keep_sid, audit=_ended(now)
            )

    async def set_user_disabled(
        self, user_id: str, now: float, *, disabled: bool, audit: Sequence[AuditEvent] = ()
    ) -> EpochRevocation | bool:
        """Disable (ending every session in the same transaction) or enable a user;
        ``False`` for an unknown user, the revocation when disabling, else ``True``."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(disabled_at=now if disabled else None)
            )
            if not result.rowcount:
                return False
            await write_audit(conn, audit)
            if not disabled:
                return True
            revocation = await end_epoch(conn, user_id, "user_disabled", now, audit=_ended(now))
            return True if revocation is None else revocation

    async def delete_user(
        self, user_id: str, now: float, *, audit: Sequence[AuditEvent] = ()
    ) -> EpochRevocation | None:
        """End every session of the user, then delete it (the ended session rows stay until
        the purge, which follows the revocation's row); ``None`` for an unknown user."""
        async with self._begin() as conn:
            revocation = await end_epoch(conn, user_id, "user_deleted", now, audit=_ended(now))
            if revocation is None:
                return None
            await conn.execute(delete(users).where(users.c.id == user_id))
            await write_audit(conn, audit)
            return revocation

    async def update_user(
        self,
        user_id: str,
        *,
        username: str | None = None,
        scope: str | None = None,
        audit: Sequence[AuditEvent] = (),
    ) -> list[str] | None:
        values: dict[str, str] = {}
        if username is not None:
            values |= {"username": username, "username_key": username_key(username)}
        if scope is not None:
            values["scope"] = scope
        try:
            async with self._begin() as conn:
                result = await conn.execute(
                    update(users).where(users.c.id == user_id).values(**values)
                )
                if not result.rowcount:
                    return None
                await write_audit(conn, audit)
                return [] if scope is None else await _narrow_sessions(conn, user_id, scope)
        except IntegrityError as exc:
            raise Conflict("A user with this name exists already.") from exc


async def _narrow_sessions(conn: AsyncConnection, user_id: str, scope: str) -> list[str]:
    """Keep in each session not revoked only the scopes also in ``scope``: its next refresh
    grants no more (sessions are never widened: a wider scope comes with the next login)."""
    allowed = set(scope.split())
    c = sessions.c
    rows = (
        await conn.execute(
            select(c.sid, c.scope).where(c.user_id == user_id, c.revoked_at.is_(None))
        )
    ).all()
    narrowed = []
    for sid, current in rows:
        kept = " ".join(part for part in current.split() if part in allowed)
        if kept != current:
            await conn.execute(update(sessions).where(c.sid == sid).values(scope=kept))
            narrowed.append(sid)
    return sorted(narrowed)


def _ended(now: float) -> AuditEvent:
    """The template of a mass revocation's audit event (end_epoch fills it in)."""
    return AuditEvent(at=now, kind=AuditKind.SESSIONS_REVOKED)
