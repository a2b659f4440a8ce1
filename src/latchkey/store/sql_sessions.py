"""The sessions table: one row per session, rotated by one conditional ``UPDATE … WHERE sid
= ? AND generation = ? AND current_hash = ? AND live RETURNING …``. The database serialises
writers, so of any number of concurrent refreshes with one token, in one process or many,
exactly one matches the row (docs/design.md §2 "Atomicity")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.audit import AuditEvent
from ..core.epochs import EpochRevocation
from ..core.sessions import Rotation, Session
from . import statements
from .engine import SqlBase, write_audit
from .sql_epochs import end_epoch, revocation_from
from .tables import audit_events, sessions, user_revocations, users

# A session with its user's epoch: one of an older epoch, or of a deleted user, is ended
# (core/epochs.py) although its own row says nothing of it.
_WITH_USER = select(
    sessions,
    users.c.epoch.label("user_epoch"),
    users.c.not_before.label("user_not_before"),
    users.c.not_before_reason.label("user_not_before_reason"),
).select_from(sessions.outerjoin(users, users.c.id == sessions.c.user_id))


def _session(row: Row[Any]) -> Session:
    session = _stored_session(row)
    if session.revoked_at is not None or row.user_epoch == session.epoch:
        return session
    if row.user_epoch is None:  # the user was deleted
        return dataclasses.replace(
            session, revoked_at=session.last_used_at, revoked_reason="user_deleted"
        )
    return dataclasses.replace(
        session,
        revoked_at=row.user_not_before,
        revoked_reason=row.user_not_before_reason,
    )


def _stored_session(row: Row[Any]) -> Session:
    return Session(
        sid=row.sid,
        user_id=row.user_id,
        generation=row.generation,
        current_hash=bytes(row.current_hash),
        previous_hash=None if row.previous_hash is None else bytes(row.previous_hash),
        rotation_nonce=None if row.rotation_nonce is None else bytes(row.rotation_nonce),
        rotated_at=row.rotated_at,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        idle_expires_at=row.idle_expires_at,
        absolute_expires_at=row.absolute_expires_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
        scope=row.scope,
        user_agent=row.user_agent,
        address=row.address,
        settled_generation=row.settled_generation,
        mark_generation=row.mark_generation,
        mark_at=row.mark_at,
        epoch=row.epoch,
        authenticated_at=row.authenticated_at,
    )


class SqlSessions(SqlBase):
    async def add_session(self, session: Session, *, audit: Sequence[AuditEvent] = ()) -> None:
        values = statements.session_values(session)
        rows = statements.audit_rows(audit)
        writer = self._sqlite_writer()
        if writer is not None:
            await writer.run(lambda c: statements.sqlite_add_session(c, values, rows))
            return
        async with self._begin() as conn:
            await conn.execute(statements.INSERT_SESSION, values)
            if rows:
                await conn.execute(statements.INSERT_AUDIT, rows)

    async def get_session(self, sid: str) -> Session | None:
        async with self._begin() as conn:
            row = (await conn.execute(_WITH_USER.where(sessions.c.sid == sid))).first()
        return None if row is None else _session(row)

    async def rotate(
        self, rotation: Rotation, *, audit: AuditEvent | None = None
    ) -> Session | None:
        values = statements.rotation_values(rotation)
        rows = statements.audit_rows([audit] if audit is not None else [])
        writer = self._sqlite_writer()
        if writer is not None:
            return await writer.run(lambda c: statements.sqlite_rotate(c, values, rows))
        if self.is_postgresql and len(rows) <= 1:
            # One statement, its own transaction: one round trip after the checkout.
            if rows:
                values.update({"audit_" + name: value for name, value in rows[0].items()})
            statement = statements.PG_ROTATE_AUDITED if rows else statements.PG_ROTATE
            found = await self._fetch_one(statement, values)
            return None if found is None else statements.session_from(found.values())
        async with self._begin() as conn:
            row = (await conn.execute(statements.ROTATE, values)).first()
            if row is not None and rows:
                for event in rows:
                    event.update(user_id=row.user_id, sid=row.sid)
                await conn.execute(statements.INSERT_AUDIT, rows)
        return None if row is None else _stored_session(row)

    async def reauthenticate(
        self, sid: str, user_id: str, now: float, *, audit: AuditEvent | None = None
    ) -> Session | None:
        c = sessions.c
        statement = (
            update(sessions)
            .where(
                c.sid == sid,
                c.user_id == user_id,
                c.revoked_at.is_(None),
                c.idle_expires_at > now,
                c.absolute_expires_at > now,
                c.epoch == statements.USER_EPOCH,  # not a session of an ended epoch
            )
            .values(authenticated_at=now)
            .returning(*sessions.columns)
        )
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
            if row is not None and audit is not None:
                await write_audit(conn, [audit])
        return None if row is None else _stored_session(row)

    async def revoke_session(
        self,
        sid: str,
        reason: str,
        now: float,
        *,
        user_id: str | None = None,
        audit: AuditEvent | None = None,
    ) -> bool:
        c = sessions.c
        statement = (
            update(sessions)
            .where(c.sid == sid, c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(c.user_id)
        )
        if user_id is not None:
            statement = statement.where(c.user_id == user_id)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
            if row is not None and audit is not None:
                await write_audit(conn, [dataclasses.replace(audit, user_id=row.user_id, sid=sid)])
        return row is not None

    async def revoke_user_sessions(
        self,
        user_id: str,
        reason: str,
        now: float,
        *,
        except_sid: str | None = None,
        audit: AuditEvent | None = None,
    ) -> EpochRevocation | None:
        async with self._begin() as conn:
            return await end_epoch(conn, user_id, reason, now, keep_sid=except_sid, audit=audit)

    async def end_oldest_sessions(
        self,
        user_id: str,
        epoch: int,
        *,
        keep: int,
        now: float,
        reason: str,
        batch: int,
        audit: AuditEvent | None = None,
    ) -> list[str]:
        c = sessions.c
        # Newest first through the index on (user_id, epoch, created_at): the rows past the
        # ``keep`` newest, at most ``batch`` of them, whatever the user holds.
        excess = (
            select(c.sid)
            .where(
                c.user_id == user_id,
                c.epoch == epoch,
                c.revoked_at.is_(None),
                c.idle_expires_at > now,
                c.absolute_expires_at > now,
            )
            .order_by(c.created_at.desc(), c.sid.desc())
            .offset(keep)
            .limit(batch)
        )
        async with self._begin() as conn:
            sids = sorted((await conn.execute(excess)).scalars())
            if sids:
                await conn.execute(
                    update(sessions)
                    .where(c.sid.in_(sids), c.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason)
                )
                if audit is not None:
                    events = [dataclasses.replace(audit, user_id=user_id, sid=s) for s in sids]
                    await write_audit(conn, events)
        return sids

    async def list_sessions(
        self, user_id: str | None = None, *, live_at: float | None = None
    ) -> list[Session]:
        c = sessions.c
        statement: Select[Any] = _WITH_USER.order_by(c.last_used_at.desc(), c.sid)
        if user_id is not None:
            statement = statement.where(c.user_id == user_id)
        if live_at is not None:
            statement = statement.where(
                c.revoked_at.is_(None),
                c.idle_expires_at > live_at,
                c.absolute_expires_at > live_at,
                c.epoch == users.c.epoch,
            )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [_session(row) for row in rows]

    async def revoked_since(self, since: float, *, limit: int = 10_000) -> list[tuple[str, float]]:
        c = sessions.c
        statement = (
            select(c.sid, c.revoked_at)
            .where(c.revoked_at >= since)
            .order_by(c.revoked_at)
            .limit(limit)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [(row.sid, row.revoked_at) for row in rows]

    async def user_revocations_since(
        self, since: float, *, limit: int = 10_000
    ) -> list[EpochRevocation]:
        r = user_revocations.c
        statement = (
            select(user_revocations)
            .where(r.revoked_at >= since)
            .order_by(r.revoked_at, r.id)
            .limit(limit)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [revocation_from(row) for row in rows]

    async def purge(self, *, sessions_before: float, audit_before: float, batch: int) -> int:
        """Delete at most ``batch`` sessions that were revoked or had expired before
        ``sessions_before``, and at most ``batch`` audit rows older than ``audit_before``;
        the number of rows deleted. Small batches keep each transaction (and lock) short."""
        c = sessions.c
        dead = (
            select(c.sid)
            .where(
                (c.revoked_at < sessions_before)
                | (c.idle_expires_at < sessions_before)
                | (c.absolute_expires_at < sessions_before)
            )
            .limit(batch)
        )
        old = select(audit_events.c.id).where(audit_events.c.at < audit_before).limit(batch)
        r = user_revocations.c
        ended = (
            select(r.id, r.user_id, r.epoch)
            .where(r.revoked_at < sessions_before)
            .order_by(r.revoked_at)
            .limit(1)
        )
        async with self._begin() as conn:
            sids = list((await conn.execute(dead)).scalars())
            ids = list((await conn.execute(old)).scalars())
            deleted = 0
            if sids:
                result = await conn.execute(delete(sessions).where(c.sid.in_(sids)))
                deleted += result.rowcount
            if ids:
                result = await conn.execute(delete(audit_events).where(audit_events.c.id.in_(ids)))
                deleted += result.rowcount
            revocation = (await conn.execute(ended)).first()
            if revocation is not None:
                deleted += await _purge_ended_epochs(conn, revocation, batch)
        return deleted


async def _purge_ended_epochs(conn: AsyncConnection, revocation: Row[Any], batch: int) -> int:
    """Up to ``batch`` sessions that a mass revocation ended (through the index on
    ``(user_id, epoch)``); the revocation's own row goes once none is left."""
    c = sessions.c
    ended = (
        select(c.sid)
        .where(c.user_id == revocation.user_id, c.epoch < revocation.epoch)
        .limit(batch)
    )
    sids = list((await conn.execute(ended)).scalars())
    deleted = 0
    if sids:
        deleted += (await conn.execute(delete(sessions).where(c.sid.in_(sids)))).rowcount
    if len(sids) < batch:
        r = user_revocations.c
        await conn.execute(delete(user_revocations).where(r.id == revocation.id))
    return deleted
