"""Schema migrations with Alembic, run programmatically (no alembic.ini to ship)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.errors import ServiceUnavailable
from .engine import DRIVER_FAULTS

_SCRIPTS = Path(__file__).with_name("migrations")


def config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(config()).get_current_head()


MIGRATION_LOCK = 0x6C6B_6D69  # advisory-lock id ("lkmi")


def _upgrade(connection: Any) -> None:
    if connection.dialect.name == "postgresql":
        # Instances starting together, or `latchkey migrate` during a rolling upgrade, run
        # the migrations one at a time; the later ones then find nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    command.upgrade(config(connection), "head")


def _current(connection: Any) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    """A database that cannot be reached (down, no such database, refused login) is one
    :class:`ServiceUnavailable` saying why, not a driver's traceback."""
    try:
        yield
    except (SQLAlchemyError, OSError, TimeoutError, *DRIVER_FAULTS) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ServiceUnavailable(f"cannot use the database: {reason}") from exc


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    async with _reachable(), engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with _reachable(), engine.connect() as conn:
        return await conn.run_sync(_current)
