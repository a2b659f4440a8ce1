"""The SQL engine (SQLAlchemy 2 Core, async; SQLite by default) and its transactions, in
which any database fault becomes a 503."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Self

import asyncpg
from sqlalchemy import event, select
from sqlalchemy.exc import DisconnectionError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..core.audit import AuditEvent
from ..core.errors import ServiceUnavailable
from . import statements
from .sqlite_writer import SqliteWriter

log = logging.getLogger("latchkey.store")

# Errors asyncpg raises unwrapped while connecting ("the database system is shutting down").
# InternalClientError: a connection whose protocol state broke when the server went away.
DRIVER_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


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


async def write_audit(conn: AsyncConnection, events: Iterable[AuditEvent]) -> None:
    rows = statements.audit_rows(events)
    if rows:
        await conn.execute(statements.INSERT_AUDIT, rows)


class SqlBase:
    """The engine and its transactions; the table groups (sql_*.py) build on it."""

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
    def from_url(cls, url: str, *, pool_size: int = 10, timeout: float = 1.5) -> Self:
        """``timeout`` bounds each transaction as a whole on PostgreSQL (pool wait, connect,
        statements); SQLite waits for other writers through its busy timeout instead."""
        engine = create_engine(url, pool_size=pool_size, timeout=timeout)
        return cls(engine, deadline=timeout if engine.dialect.name == "postgresql" else None)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; any database fault becomes a 503, never a 500.

        With a deadline (PostgreSQL), a connection still in use when it passes is terminated:
        every wait on it ends at once with a disconnect error (a cancelled wait would be
        followed by a ROLLBACK and a graceful close, each waiting for a server that no longer
        answers). PostgreSQL rolls back what was not committed; a COMMIT cut off this way is
        answered with a 503 although it may have landed, which for a rotation is the grace
        case (the client retries with the same token).
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
                    yield conn
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError, *DRIVER_FAULTS) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable() from exc

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on :meth:`_connect`'s terms."""
        async with self._connect() as conn, conn.begin():
            yield conn

    async def _fetch_one(self, statement: statements.Positional, values: dict[str, Any]) -> Any:
        """One statement that is its own transaction, straight on the asyncpg connection:
        one round trip after the checkout, where a SQLAlchemy transaction takes three
        (BEGIN, the statement, COMMIT). PostgreSQL only; the row, or None."""
        async with self._connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            return await raw.fetchrow(statement.sql, *statement.arguments(values))

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(None, writer.close)
        await self.engine.dispose()
