"""The SQL store (SQLAlchemy 2 Core, async). SQLite by default.

Rotation is one ``UPDATE … WHERE sid = ? AND generation = ? AND current_hash = ? AND live
RETURNING …``: the database serialises writers, so of any number of concurrent refreshes with
one token, in one process or many, exactly one matches the row (docs/design.md §2 "Atomicity").
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import delete, event, literal, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DisconnectionError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..core.audit import AuditEvent, AuditKind
from ..core.clients import Client
from ..core.errors import Conflict, ServiceUnavailable
from ..core.keyring import StoredKey
from ..core.sessions import Rotation, Session
from ..core.users import User
from . import statements
from .sqlite_writer import SqliteWriter
from .tables import audit_events, clients, sessions, signing_keys, users

log = logging.getLogger("latchkey.store")

# Errors asyncpg raises unwrapped while connecting ("the database system is shutting down").
# InternalClientError: a connection whose protocol state broke when the server went away.
_DRIVER_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_KEYS_LOCK = 0x6C6B_6B65  # advisory-lock id for first-key creation ("lkke")


def async_url(url: str) -> str:
    """Pick the async driver for a plain URL (``sqlite://…`` → ``sqlite+aiosqlite://…``)."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def create_engine(url: str, *, pool_size: int = 10, timeout: float = 1.5) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the writer; FULL: an acknowledged commit survives a
            # power cut too; busy_timeout: concurrent writers (other processes) queue up.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    # PostgreSQL: bounded waits everywhere, so that a database that is down or hung turns
    # into a 503 within ``timeout`` seconds instead of a hang (connect, pool, statement).
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        pool_recycle=1800,
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # Our own pre-ping: one round trip, no transaction, bounded by command_timeout. A
        # dead connection (server restarted) raises DisconnectionError: the pool drops every
        # connection older than it and retries with a new one, so a restart costs no failed
        # request. A server that does not answer fails the checkout at once; the connection
        # is terminated first, because the pool's own clean-up would wait for the hung server.
        try:
            dbapi_connection.run_async(lambda connection: connection.execute("SELECT 1"))
        except TimeoutError:
            dbapi_connection.driver_connection.terminate()
            raise
        except Exception as exc:  # refused, reset, or a connection left in a broken state
            dbapi_connection.driver_connection.terminate()
            raise DisconnectionError() from exc

    return engine


async def _audit(conn: AsyncConnection, events: Iterable[AuditEvent]) -> None:
    rows = statements.audit_rows(events)
    if rows:
        await conn.execute(statements.INSERT_AUDIT, rows)


async def _revoke_all(
    conn: AsyncConnection,
    user_id: str,
    reason: str,
    now: float,
    except_sid: str | None,
    audit: AuditEvent | None,
) -> list[str]:
    """Revoke every live session of a user but ``except_sid``; the revoked ids."""
    c = sessions.c
    statement = (
        update(sessions)
        .where(c.user_id == user_id, c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .returning(c.sid)
    )
    if except_sid is not None:
        statement = statement.where(c.sid != except_sid)
    sids = sorted((await conn.execute(statement)).scalars())
    if audit is not None:
        await _audit(
            conn,
            [dataclasses.replace(audit, user_id=user_id, sid=sid, reason=reason) for sid in sids],
        )
    return sids


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=row.created_at,
        scope=row.scope,
        disabled_at=row.disabled_at,
    )


def _session(row: Row[Any]) -> Session:
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
    )


def _client(row: Row[Any]) -> Client:
    return Client(
        id=row.client_id,
        name=row.name,
        secret_hash=bytes(row.secret_hash),
        created_at=row.created_at,
    )


class SqlStore:
    """:class:`~latchkey.store.Store` over SQLAlchemy; one instance per process."""

    def __init__(self, engine: AsyncEngine, *, deadline: float | None = None) -> None:
        self.engine = engine
        self._deadline = deadline
        # SQLite file: rotations and new sessions go through one writer thread per process,
        # committed in groups (store/sqlite_writer.py); started at the first such write.
        database = engine.url.database
        self._sqlite_path = (
            database
            if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
            else None
        )
        self._writer: SqliteWriter | None = None

    def _sqlite_writer(self) -> SqliteWriter | None:
        if self._writer is None and self._sqlite_path is not None:
            self._writer = SqliteWriter(self._sqlite_path)
        return self._writer

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10, timeout: float = 1.5) -> SqlStore:
        """``timeout`` bounds each transaction as a whole on PostgreSQL (pool wait, connect,
        statements); SQLite waits for other writers through its busy timeout instead."""
        engine = create_engine(url, pool_size=pool_size, timeout=timeout)
        return cls(engine, deadline=timeout if engine.dialect.name == "postgresql" else None)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; any database fault becomes a 503, never a 500.

        With a deadline (PostgreSQL), a transaction still running when it passes has its
        connection terminated: every wait on it ends at once with a disconnect error (a
        cancelled wait would be followed by a ROLLBACK and a graceful close, each waiting for
        a server that no longer answers). PostgreSQL rolls back what was not committed; a
        COMMIT cut off this way is answered with a 503 although it may have landed, which for
        a rotation is the grace case (the client retries with the same token).
        """
        try:
            async with self.engine.connect() as conn:
                watchdog = None
                if self._deadline is not None:
                    raw = (await conn.get_raw_connection()).driver_connection
                    if raw is not None:
                        loop = asyncio.get_running_loop()
                        watchdog = loop.call_later(self._deadline, raw.terminate)
                try:
                    async with conn.begin():
                        yield conn
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError, *_DRIVER_FAULTS) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable() from exc

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
                await _audit(conn, audit)
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

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._begin() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

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
            row = (await conn.execute(select(sessions).where(sessions.c.sid == sid))).first()
        return None if row is None else _session(row)

    async def rotate(
        self, rotation: Rotation, *, audit: AuditEvent | None = None
    ) -> Session | None:
        values = statements.rotation_values(rotation)
        rows = statements.audit_rows([audit] if audit is not None else [])
        writer = self._sqlite_writer()
        if writer is not None:
            return await writer.run(lambda c: statements.sqlite_rotate(c, values, rows))
        async with self._begin() as conn:
            row = (await conn.execute(statements.ROTATE, values)).first()
            if row is not None and rows:
                for event in rows:
                    event.update(user_id=row.user_id, sid=row.sid)
                await conn.execute(statements.INSERT_AUDIT, rows)
        return None if row is None else _session(row)

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
                await _audit(conn, [dataclasses.replace(audit, user_id=row.user_id, sid=sid)])
        return row is not None

    async def revoke_user_sessions(
        self,
        user_id: str,
        reason: str,
        now: float,
        *,
        except_sid: str | None = None,
        audit: AuditEvent | None = None,
    ) -> list[str]:
        async with self._begin() as conn:
            return await _revoke_all(conn, user_id, reason, now, except_sid, audit)

    async def list_sessions(
        self, user_id: str | None = None, *, live_at: float | None = None
    ) -> list[Session]:
        c = sessions.c
        statement = select(sessions).order_by(c.last_used_at.desc(), c.sid)
        if user_id is not None:
            statement = statement.where(c.user_id == user_id)
        if live_at is not None:
            statement = statement.where(
                c.revoked_at.is_(None),
                c.idle_expires_at > live_at,
                c.absolute_expires_at > live_at,
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

    # --- users: password, disable, delete -------------------------------------------------

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
            await _audit(conn, audit)
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            reason = "password_changed"
            return await _revoke_all(conn, user_id, reason, now, keep_sid, template)

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
            await _audit(conn, audit)
            if not disabled:
                return []
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            return await _revoke_all(conn, user_id, "user_disabled", now, None, template)

    async def delete_user(
        self, user_id: str, now: float, *, audit: Sequence[AuditEvent] = ()
    ) -> list[str] | None:
        """Delete a user after revoking every session (the revoked rows stay until the purge,
        so that every instance's deny-list hears of them); ``None`` for an unknown user."""
        async with self._begin() as conn:
            result = await conn.execute(delete(users).where(users.c.id == user_id))
            if not result.rowcount:
                return None
            await _audit(conn, audit)
            template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user_id)
            return await _revoke_all(conn, user_id, "user_deleted", now, None, template)

    # --- audit trail, purge ------------------------------------------------------------------

    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        async with self._begin() as conn:
            await _audit(conn, events)

    async def list_audit(
        self,
        *,
        user_id: str | None = None,
        since: float | None = None,
        kind: AuditKind | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """Newest first."""
        c = audit_events.c
        statement = select(audit_events).order_by(c.at.desc(), c.id.desc()).limit(limit)
        if kind is not None:
            statement = statement.where(c.kind == kind.value)
        if user_id is not None:
            statement = statement.where(c.user_id == user_id)
        if since is not None:
            statement = statement.where(c.at >= since)
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            AuditEvent(
                id=row.id,
                at=row.at,
                kind=AuditKind(row.kind),
                user_id=row.user_id,
                username=row.username,
                sid=row.sid,
                address=row.address,
                user_agent=row.user_agent,
                reason=row.reason,
            )
            for row in rows
        ]

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
        return deleted

    async def list_signing_keys(self) -> list[StoredKey]:
        async with self._begin() as conn:
            rows = (await conn.execute(select(signing_keys))).all()
        return [
            StoredKey(
                kid=row.kid,
                alg=row.alg,
                sealed_private_key=bytes(row.sealed_private_key),
                created_at=row.created_at,
                activates_at=row.activates_at,
                retired_at=row.retired_at,
            )
            for row in rows
        ]

    async def add_signing_key(
        self, key: StoredKey, *, only_if_none: bool = False, only_if_none_after: float | None = None
    ) -> bool:
        c = signing_keys.c
        values = {
            "kid": key.kid,
            "alg": key.alg,
            "sealed_private_key": key.sealed_private_key,
            "created_at": key.created_at,
            "activates_at": key.activates_at,
            "retired_at": key.retired_at,
        }
        unless = []  # one INSERT … SELECT … WHERE NOT EXISTS: the check and the write are one
        if only_if_none:
            unless.append(select(c.kid).where(c.retired_at.is_(None)).exists())
        if only_if_none_after is not None:
            unless.append(select(c.kid).where(c.created_at > only_if_none_after).exists())
        async with self._begin() as conn:
            if not unless:
                await conn.execute(signing_keys.insert().values(**values))
                return True
            if self.is_postgresql:
                # Serialise conditional key creation across instances for this transaction
                # (READ COMMITTED would let two such INSERTs both see no row).
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEYS_LOCK})
            source = select(
                *[literal(v, type_=c[k].type).label(k) for k, v in values.items()]
            ).where(*[~exists for exists in unless])
            result = await conn.execute(signing_keys.insert().from_select(list(values), source))
            return bool(result.rowcount)

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        if not kids:
            return 0
        c = signing_keys.c
        newest = select(c.kid).order_by(c.created_at.desc(), c.kid.desc()).limit(1)
        async with self._begin() as conn:
            result = await conn.execute(
                delete(signing_keys).where(c.kid.in_(list(kids)), c.kid != newest.scalar_subquery())
            )
        return int(result.rowcount)

    async def withdraw_signing_keys(self, *, keep: str, at: float) -> list[str]:
        c = signing_keys.c
        async with self._begin() as conn:
            if (await conn.execute(select(c.kid).where(c.kid == keep))).first() is None:
                return []
            result = await conn.execute(
                update(signing_keys)
                .where(c.kid != keep, (c.retired_at.is_(None)) | (c.retired_at > at))
                .values(retired_at=at)
                .returning(c.kid)
            )
            return sorted(row.kid for row in result)

    # --- registered clients ----------------------------------------------------------------

    async def add_client(self, client: Client, *, audit: Sequence[AuditEvent] = ()) -> None:
        values = {
            "client_id": client.id,
            "name": client.name,
            "secret_hash": client.secret_hash,
            "created_at": client.created_at,
        }
        try:
            async with self._begin() as conn:
                await conn.execute(clients.insert().values(**values))
                await _audit(conn, audit)
        except IntegrityError as exc:
            raise Conflict("A client with this id exists already.") from exc

    async def client_by_id(self, client_id: str) -> Client | None:
        async with self._begin() as conn:
            row = (
                await conn.execute(select(clients).where(clients.c.client_id == client_id))
            ).first()
        return None if row is None else _client(row)

    async def list_clients(self) -> list[Client]:
        c = clients.c
        async with self._begin() as conn:
            rows = (await conn.execute(select(clients).order_by(c.created_at, c.client_id))).all()
        return [_client(row) for row in rows]

    async def remove_client(self, client_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(delete(clients).where(clients.c.client_id == client_id))
            if not result.rowcount:
                return False
            await _audit(conn, audit)
        return True

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(None, writer.close)
        await self.engine.dispose()
