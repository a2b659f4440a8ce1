"""Backup and restore on both databases, across them, and every way a file can be wrong.

The rows are written straight into every table of the schema, one value per column and none
left to a default, so that a column the backup forgot would show as a difference. The fresh
PostgreSQL databases are created and dropped per test on the machine's server.
"""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import MetaData, Table, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from latchkey.store import migrate
from latchkey.store.backup import BackupError, BackupKeys, backup, restore
from latchkey.store.backup_format import write_backup
from latchkey.store.engine import create_engine
from latchkey.store.tables import metadata
from support import POSTGRES_URL, run_sync

pytestmark = pytest.mark.anyio

KEYS = BackupKeys(secret=b"s" * 32, refresh=b"r" * 32)
NOW = 1_800_000_000.0
KINDS = ("sqlite", "postgresql")

NewDatabase = Callable[[str], Awaitable[AsyncEngine]]


@pytest.fixture
async def new_database(tmp_path: Path) -> AsyncIterator[NewDatabase]:
    """``await new_database(kind)``: an engine on a new, empty database of that kind."""
    engines: list[AsyncEngine] = []
    databases: list[str] = []
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def make(kind: str) -> AsyncEngine:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        else:
            name = f"latchkey_backup_{uuid.uuid4().hex[:12]}"
            conn = await asyncpg.connect(admin, timeout=5)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()
            databases.append(name)
            url = admin.rsplit("/", 1)[0] + "/" + name
        engine = create_engine(url, pool_size=2, timeout=30)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()
    for name in databases:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def sample(table: Table, number: int) -> dict[str, Any]:
    """A row of ``table`` with every column set, unique per ``number``."""
    row: dict[str, Any] = {}
    for column in table.c:
        kind = column.type.python_type
        if kind is bytes:
            size = getattr(column.type, "length", None) or 40
            row[column.name] = bytes([number + 1]) * size
        elif kind is int:
            row[column.name] = 1_000 + number
        elif kind is float:
            row[column.name] = NOW + number + 0.125
        elif kind is bool:
            row[column.name] = number % 2 == 0
        else:
            length = getattr(column.type, "length", None) or 64
            row[column.name] = f"{column.name}-{number}"[:length]
    return row


async def fill(engine: AsyncEngine, count: int = 3) -> None:
    """The newest schema, with ``count`` rows in every table."""
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        for table in metadata.sorted_tables:
            await conn.execute(table.insert(), [sample(table, n) for n in range(count)])


def everything(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (Alembic's aside), ordered, by table name."""
    reflected = MetaData()
    reflected.reflect(connection)
    return {
        name: sorted(tuple(row) for row in connection.execute(select(table)))
        for name, table in reflected.tables.items()
        if name != "alembic_version"
    }


async def rows_of(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        return await conn.run_sync(everything)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


@pytest.mark.parametrize("source_kind", KINDS)
@pytest.mark.parametrize("target_kind", KINDS)
async def test_a_backup_restores_every_row_into_either_database(
    new_database: NewDatabase, tmp_path: Path, source_kind: str, target_kind: str
) -> None:
    source = await new_database(source_kind)
    await fill(source)
    path = tmp_path / "latchkey.backup"
    written = await backup(source, path, KEYS, now=NOW)
    assert written.revision == migrate.head_revision()
    assert written.rows == {table.name: 3 for table in metadata.sorted_tables}

    target = await new_database(target_kind)
    restored = await restore(target, path, KEYS)
    assert restored.rows == written.rows
    assert await rows_of(target) == await rows_of(source)
    assert await migrate.current_revision(target) == migrate.head_revision()


async def test_every_table_of_the_schema_is_in_the_backup(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    """The tables of the migrated database, those of store/tables.py and the backup's agree:
    a table added later is carried, or this fails."""
    source = await new_database("sqlite")
    await fill(source, count=1)
    written = await backup(source, tmp_path / "b", KEYS, now=NOW)
    in_database = await table_names(source) - {"alembic_version"}
    assert set(written.columns) == in_database == set(metadata.tables)
    for table in metadata.sorted_tables:
        assert [name for name, _ in written.columns[table.name]] == list(table.c.keys())


@pytest.mark.parametrize("target_kind", KINDS)
async def test_a_table_and_a_column_of_a_later_migration_are_carried(
    new_database: NewDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target_kind: str,
) -> None:
    """A migration after today's adds a column and a table: backup and restore carry both
    without knowing them (the migrations directory is a copy with one more revision)."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate._SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head_revision()
    (scripts / "versions" / "9999_later.py").write_text(
        f'''"""A later migration."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.add_column("users", sa.Column("nickname", sa.String(64), nullable=True))
    op.create_table("later", sa.Column("id", sa.String(8), primary_key=True),
                    sa.Column("blob", sa.LargeBinary, nullable=False))


def downgrade() -> None:
    op.drop_table("later")
    op.drop_column("users", "nickname")
'''
    )
    monkeypatch.setattr(migrate, "_SCRIPTS", scripts)
    source = await new_database("sqlite")
    await fill(source, count=2)
    async with source.begin() as conn:
        await conn.execute(text("UPDATE users SET nickname = 'nick-' || id"))
        await conn.execute(text("INSERT INTO later VALUES ('a', x'00ff')"))
    await backup(source, tmp_path / "b", KEYS, now=NOW)

    target = await new_database(target_kind)
    await restore(target, tmp_path / "b", KEYS)
    assert await migrate.current_revision(target) == "9999"
    async with target.connect() as conn:
        nicknames = (await conn.execute(text("SELECT nickname FROM users"))).scalars().all()
        later = (await conn.execute(text("SELECT id, blob FROM later"))).all()
    assert sorted(nicknames) == ["nick-id-0", "nick-id-1"]
    assert [tuple(row) for row in later] == [("a", b"\x00\xff")]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_backup_is_one_snapshot_while_others_write(
    new_database: NewDatabase, tmp_path: Path, kind: str
) -> None:
    """A login committed by another connection while the backup reads its first table is
    not in the backup, and is in the database: the backup read one snapshot."""
    from sqlalchemy import event

    source = await new_database(kind)
    await fill(source, count=2)
    url = source.url.render_as_string(hide_password=False)
    written_meanwhile: list[bool] = []

    def write_elsewhere() -> None:
        other = create_engine(url)

        async def insert() -> None:
            async with other.begin() as conn:
                for table in metadata.sorted_tables:
                    await conn.execute(table.insert(), [sample(table, 99)])
            await other.dispose()

        run_sync(insert)
        written_meanwhile.append(True)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not written_meanwhile and "FROM users" in statement:
            write_elsewhere()

    event.listen(source.sync_engine, "before_cursor_execute", before)
    try:
        written = await backup(source, tmp_path / "b", KEYS, now=NOW)
    finally:
        event.remove(source.sync_engine, "before_cursor_execute", before)
    assert written_meanwhile == [True]
    assert set(written.rows.values()) == {2}
    assert {len(rows) for rows in (await rows_of(source)).values()} == {3}


async def test_the_file_is_owner_only_and_never_half_written(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    source = await new_database("sqlite")
    await fill(source, count=1)
    path = tmp_path / "latchkey.backup"
    path.write_text("an older backup, readable by all")
    path.chmod(0o644)
    await backup(source, path, KEYS, now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    failing = tmp_path / "absent" / "b"
    with pytest.raises(BackupError, match=r"cannot write .*absent/b"):
        await backup(source, failing, KEYS, now=NOW)
    assert not failing.parent.exists()


# --- files that must be refused --------------------------------------------------------------


@pytest.fixture
async def good_backup(new_database: NewDatabase, tmp_path: Path) -> Path:
    source = await new_database("sqlite")
    await fill(source)
    path = tmp_path / "good.backup"
    await backup(source, path, KEYS, now=NOW)
    return path


def lines_of(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as stream:
        return list(stream)


def rewrite(path: Path, lines: list[bytes]) -> Path:
    changed = path.with_name("changed.backup")
    with gzip.open(changed, "wb") as stream:
        stream.writelines(lines)
    return changed


def mutations(path: Path) -> Iterator[tuple[str, Path, str]]:
    """(what, file, expected message) for each way of damaging ``path``."""
    lines = lines_of(path)
    raw = path.read_bytes()
    cut = path.with_name("cut.backup")
    cut.write_bytes(raw[: len(raw) // 2])
    yield "cut inside the compressed stream", cut, "is not a complete latchkey backup"
    yield "cut after a row", rewrite(path, lines[:-3]), "is cut short"
    header = json.loads(lines[0])
    row = json.loads(lines[1])
    row[1][0] = "someone-else"
    yield (
        "a row altered",
        rewrite(path, [lines[0], json.dumps(row).encode() + b"\n", *lines[2:]]),
        "damaged or was altered",
    )
    yield "a row removed", rewrite(path, [lines[0], *lines[2:]]), "damaged or was altered"
    yield (
        "a row repeated",
        rewrite(path, [lines[0], lines[1], *lines[1:]]),
        "damaged or was altered",
    )
    yield "not JSON", rewrite(path, [lines[0], b"{oops\n", *lines[2:]]), "damaged or was altered"
    newer = {**header, "version": 2}
    yield (
        "a newer format",
        rewrite(path, [json.dumps(newer).encode() + b"\n", *lines[1:]]),
        "newer than this latchkey reads",
    )
    other = path.with_name("other.txt")
    other.write_text("hello")
    yield "not gzip", other, "is not a complete latchkey backup"
    yield "no such file", path.with_name("absent"), "no such file"


@pytest.mark.parametrize("target_kind", KINDS)
async def test_a_damaged_file_is_refused_and_nothing_is_written(
    new_database: NewDatabase, good_backup: Path, target_kind: str
) -> None:
    target = await new_database(target_kind)
    for what, path, message in mutations(good_backup):
        with pytest.raises(BackupError, match=message):
            await restore(target, path, KEYS)
        assert await table_names(target) == set(), what
    await restore(target, good_backup, KEYS)  # the target was left as new


async def test_another_secret_is_refused_naming_the_setting(
    new_database: NewDatabase, good_backup: Path
) -> None:
    target = await new_database("sqlite")
    with pytest.raises(BackupError, match="LATCHKEY_SECRET_KEY") as secret:
        await restore(target, good_backup, BackupKeys(secret=b"x" * 32, refresh=KEYS.refresh))
    assert "secret.key" in str(secret.value)
    with pytest.raises(BackupError, match="LATCHKEY_REFRESH_SECRET"):
        await restore(target, good_backup, BackupKeys(secret=KEYS.secret, refresh=b"x" * 32))
    assert await table_names(target) == set()


async def test_a_schema_from_a_newer_latchkey_is_refused(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    source = await new_database("sqlite")
    await fill(source, count=1)
    path = tmp_path / "future.backup"
    async with source.connect() as conn:
        await conn.run_sync(
            lambda sync: write_backup(sync, path, KEYS, revision="0999_future", now=NOW)
        )
    target = await new_database("sqlite")
    with pytest.raises(BackupError, match=r"0999_future.*newer version"):
        await restore(target, path, KEYS)


@pytest.mark.parametrize("target_kind", KINDS)
async def test_a_database_with_rows_is_refused_and_left_as_it_was(
    new_database: NewDatabase, good_backup: Path, target_kind: str
) -> None:
    target = await new_database(target_kind)
    await fill(target, count=1)
    before = await rows_of(target)
    with pytest.raises(BackupError, match=r"not empty .*users"):
        await restore(target, good_backup, KEYS)
    assert await rows_of(target) == before


@pytest.mark.parametrize("target_kind", KINDS)
async def test_an_empty_migrated_database_takes_the_backup(
    new_database: NewDatabase, good_backup: Path, target_kind: str
) -> None:
    """`latchkey migrate` first, then restore: an empty schema at the newest revision."""
    target = await new_database(target_kind)
    await migrate.upgrade(target)
    contents = await restore(target, good_backup, KEYS)
    assert contents.rows["users"] == 3


@pytest.mark.parametrize("target_kind", KINDS)
async def test_a_failure_after_the_schema_was_made_rolls_all_back(
    new_database: NewDatabase, tmp_path: Path, target_kind: str
) -> None:
    """A backup whose columns do not match its revision fails after the restore created the
    schema: the one transaction leaves no table behind."""
    source = await new_database("sqlite")
    await fill(source, count=1)
    async with source.begin() as conn:
        await conn.execute(text("ALTER TABLE users ADD COLUMN stray TEXT"))
    await backup(source, tmp_path / "b", KEYS, now=NOW)
    target = await new_database(target_kind)
    with pytest.raises(BackupError, match="table users of the backup does not match"):
        await restore(target, tmp_path / "b", KEYS)
    assert await table_names(target) == set()


@pytest.mark.parametrize("target_kind", ["postgresql"])
async def test_new_rows_after_a_restore_get_fresh_ids(
    new_database: NewDatabase, good_backup: Path, target_kind: str
) -> None:
    """PostgreSQL's sequences are moved past the restored ids."""
    target = await new_database(target_kind)
    await restore(target, good_backup, KEYS)
    async with target.begin() as conn:
        new_id = (
            await conn.execute(
                text("INSERT INTO audit_events (at, kind) VALUES (1, 'login') RETURNING id")
            )
        ).scalar()
    assert new_id == 1_003
