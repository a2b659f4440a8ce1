"""The SQL store (SQLAlchemy 2 Core, async). SQLite by default.

Rotation is one ``UPDATE … WHERE sid = ? AND generation = ? AND current_hash = ? AND live
RETURNING …``: the database serialises writers, so of any number of concurrent refreshes with
one token, in one process or many, exactly one matches the row (DESIGN §2 "Atomicity").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, literal, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DisconnectionError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..core.errors import Conflict, ServiceUnavailable
from ..core.keyring import StoredKey
from ..core.sessions import Rotation, Session
from ..core.users import User
from .tables import sessions, signing_keys, users

log = logging.getLogger("latchkey.store")

# Errors asyncpg raises unwrapped while connecting ("the database system is shutting down").
_DRIVER_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError)
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
        except (OSError, *_DRIVER_FAULTS) as exc:
            dbapi_connection.driver_connection.terminate()
            raise DisconnectionError() from exc

    return engine


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


class SqlStore:
    """:class:`~latchkey.store.Store` over SQLAlchemy; one instance per process."""

    def __init__(self, engine: AsyncEngine, *, deadline: float | None = None) -> None:
        self.engine = engine
        self._deadline = deadline

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

    async def add_user(self, user: User) -> None:
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

    async def add_session(self, session: Session) -> None:
        values = {column.name: getattr(session, column.name) for column in sessions.columns}
        async with self._begin() as conn:
            await conn.execute(sessions.insert().values(**values))

    async def get_session(self, sid: str) -> Session | None:
        async with self._begin() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.sid == sid))).first()
        return None if row is None else _session(row)

    async def rotate(self, rotation: Rotation) -> Session | None:
        c = sessions.c
        statement = (
            update(sessions)
            .where(
                c.sid == rotation.sid,
                c.generation == rotation.expected_generation,
                c.current_hash == rotation.expected_hash,
                c.revoked_at.is_(None),
                c.idle_expires_at > rotation.now,
                c.absolute_expires_at > rotation.now,
            )
            .values(
                generation=rotation.new_generation,
                current_hash=rotation.new_hash,
                previous_hash=rotation.expected_hash,
                rotation_nonce=rotation.nonce,
                rotated_at=rotation.now,
                last_used_at=rotation.now,
                idle_expires_at=rotation.idle_expires_at,
            )
            .returning(*sessions.columns)
        )
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else _session(row)

    async def revoke_session(self, sid: str, reason: str, now: float) -> bool:
        statement = (
            update(sessions)
            .where(sessions.c.sid == sid, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        async with self._begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

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

    async def add_signing_key(self, key: StoredKey, *, only_if_none: bool = False) -> bool:
        values = {
            "kid": key.kid,
            "alg": key.alg,
            "sealed_private_key": key.sealed_private_key,
            "created_at": key.created_at,
            "activates_at": key.activates_at,
            "retired_at": key.retired_at,
        }
        async with self._begin() as conn:
            if not only_if_none:
                await conn.execute(signing_keys.insert().values(**values))
                return True
            if self.is_postgresql:
                # Serialise first-key creation across instances for this transaction.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEYS_LOCK})
            live = select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None))
            source = select(
                *[literal(v, type_=signing_keys.c[k].type).label(k) for k, v in values.items()]
            ).where(~live.exists())
            result = await conn.execute(signing_keys.insert().from_select(list(values), source))
            return bool(result.rowcount)

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()
