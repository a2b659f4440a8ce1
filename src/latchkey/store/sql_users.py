"""The users table: accounts, and the changes that end their sessions in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..core.audit import AuditEvent, AuditKind
from ..core.errors import Conflict
from ..core.users import User
from .engine import SqlBase, write_audit
from .sql_sessions import revoke_all
from .tables import users


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=row.created_at,
        scope=row.scope,
        disabled_at=row.disabled_at,
    )


class SqlUsers(SqlBase):
    async def add_user(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> None:
        values = {
            "id": user.id,
            "username": user.username,
            "username_key": user.key,
            "password_hash": user.password_hash,
            "scope": user.scope,
            "created_at": user.created_at,
            "disabled_at": user.disabled_at,
        }
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
    ) -> list[str]:
        """Set the hash and revoke every session but ``keep_sid``, in one transaction."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )
            if not result.rowcount:
                return []  # unknown user: nothing changed, nothing to audit
            await write_audit(conn, audit)
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            reason = "password_changed"
            return await revoke_all(conn, user_id, reason, now, keep_sid, template)

    async def set_user_disabled(
        self, user_id: str, now: float, *, disabled: bool, audit: Sequence[AuditEvent] = ()
    ) -> list[str] | None:
        """Disable (revoking every session in the same transaction) or enable a user;
        ``None`` for an unknown user, else the ids of the sessions revoked."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(disabled_at=now if disabled else None)
            )
            if not result.rowcount:
                return None
            await write_audit(conn, audit)
            if not disabled:
                return []
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            return await revoke_all(conn, user_id, "user_disabled", now, None, template)

    async def delete_user(
        self, user_id: str, now: float, *, audit: Sequence[AuditEvent] = ()
    ) -> list[str] | None:
        """Delete a user after revoking every session (the revoked rows stay until the purge,
        so that every instance's deny-list hears of them); ``None`` for an unknown user."""
        async with self._begin() as conn:
            result = await conn.execute(delete(users).where(users.c.id == user_id))
            if not result.rowcount:
                return None
            await write_audit(conn, audit)
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            return await revoke_all(conn, user_id, "user_deleted", now, None, template)
