"""``latchkey backup`` and ``latchkey restore``: the transactions around the backup file
(store/backup_format.py).

:func:`backup` reads every table in one read transaction: a consistent snapshot while the
service runs (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite: one deferred transaction, whose
snapshot WAL keeps while writers go on). :func:`restore` checks the whole file first, then, in
one transaction, brings an empty database to the backup's schema revision, loads the rows and
migrates them to the newest revision, so that the data migrations apply to them as they did
to the original: an error at any point leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Integer, func, literal, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .backup_format import (
    BackupError,
    BackupKeys,
    Contents,
    read_backup,
    snapshot_tables,
    write_backup,
)
from .migrate import MIGRATION_LOCK, config

__all__ = ["BackupError", "BackupKeys", "Contents", "backup", "restore"]

_BATCH = 1000  # rows per INSERT


async def backup(engine: AsyncEngine, path: Path, keys: BackupKeys, *, now: float) -> Contents:
    """Write a consistent snapshot of the database to ``path`` (mode 0600)."""
    async with engine.connect() as conn:
        await _begin(conn, read_only=True)
        try:
            revision = await conn.run_sync(_revision)
            return await conn.run_sync(
                lambda sync: write_backup(sync, path, keys, revision=revision, now=now)
            )
        finally:
            await conn.rollback()


async def restore(engine: AsyncEngine, path: Path, keys: BackupKeys) -> Contents:
    """Load the backup at ``path`` into the empty database of ``engine``, in one transaction."""
    contents, rows = read_backup(path, keys)
    scripts = ScriptDirectory.from_config(config())
    try:
        known = contents.revision is not None and scripts.get_revision(contents.revision)
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            f"{path} has schema revision {contents.revision}, which this latchkey does not know: "
            "it was made by a newer version; restore it with that version or a newer one"
        )
    async with engine.connect() as conn:
        await _begin(conn, read_only=False)
        try:
            await conn.run_sync(_load, contents, rows)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
    return contents


async def _begin(conn: AsyncConnection, *, read_only: bool) -> None:
    if conn.dialect.name == "sqlite":
        # The driver starts no transaction before a SELECT or DDL by itself: say it. IMMEDIATE
        # takes the write lock now, so nobody writes between the emptiness check and the load.
        await conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
    elif read_only:
        # The snapshot is taken at the first statement: the schema revision's.
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _load(
    connection: Connection, contents: Contents, rows: Iterator[tuple[str, list[Any]]]
) -> None:
    postgres = connection.dialect.name == "postgresql"
    if postgres:  # one restore or migration at a time
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    existing = snapshot_tables(connection)
    if postgres and existing:  # no instance writes until this transaction ends
        names = ", ".join(connection.dialect.identifier_preparer.quote(t.name) for t in existing)
        connection.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
    filled = [
        table.name
        for table in existing
        if connection.execute(select(literal(1)).select_from(table).limit(1)).first()
    ]
    if filled:
        raise BackupError(
            f"the database is not empty ({', '.join(filled)} have rows): restore into a new "
            "database, before latchkey serve first starts on it"
        )
    _migrate_to(connection, contents.revision)

    tables = {table.name: table for table in snapshot_tables(connection)}
    for name, columns in contents.columns.items():
        table = tables.get(name)
        if table is None or {c for c, _ in columns} != set(table.c.keys()):
            raise BackupError(
                f"table {name} of the backup does not match schema {contents.revision}"
            )
    for name, batch in groupby(rows, key=lambda row: row[0]):
        order = [column for column, _ in contents.columns[name]]
        pending = [dict(zip(order, values, strict=True)) for _, values in batch]
        for start in range(0, len(pending), _BATCH):
            connection.execute(tables[name].insert(), pending[start : start + _BATCH])

    command.upgrade(config(connection), "head")
    if postgres:
        _advance_sequences(connection)


def _migrate_to(connection: Connection, revision: str | None) -> None:
    """Bring the (empty) schema to ``revision``, up or down."""
    current = _revision(connection)
    if current == revision:
        return
    scripts = ScriptDirectory.from_config(config())
    below = {script.revision for script in scripts.iterate_revisions(current, "base")}
    if current is not None and revision in below:
        command.downgrade(config(connection), revision or "base")
    else:
        command.upgrade(config(connection), revision or "head")


def _advance_sequences(connection: Connection) -> None:
    """PostgreSQL: rows were inserted with their ids, past the sequences; move them on."""
    for table in snapshot_tables(connection):
        for column in table.primary_key.columns:
            if not isinstance(column.type, Integer):
                continue
            sequence = connection.execute(
                select(func.pg_get_serial_sequence(table.name, column.name))
            ).scalar()
            if sequence is not None:
                highest = connection.execute(select(func.max(column))).scalar()
                connection.execute(select(func.setval(sequence, (highest or 0) + 1, False)))
