"""Schema migrations with Alembic, run programmatically (no alembic.ini to ship)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
