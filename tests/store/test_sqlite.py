"""The store contract against the SQLite adapter, plus its migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from contract import OpenStore, StoreContract, make_user
from sqlalchemy import inspect

from latchkey.store import Store
from latchkey.store.migrate import current_revision, head_revision, upgrade
from latchkey.store.sql import SqlStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


class TestSqliteStore(StoreContract):
    """The SQLite adapter on a temporary database file."""

    @pytest.fixture
    async def open_store(self, database_url: str) -> AsyncIterator[OpenStore]:
        migrated = SqlStore.from_url(database_url)
        await upgrade(migrated.engine)
        await migrated.close()

        async def open_() -> Store:
            return SqlStore.from_url(database_url)

        yield open_


def _tables(sync_connection: object) -> list[str]:
    return sorted(inspect(sync_connection).get_table_names())


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    """A second upgrade keeps the revision at head and the data and schema as they were."""
    store = SqlStore.from_url(database_url)
    try:
        assert await current_revision(store.engine) is None
        await upgrade(store.engine)
        head = head_revision()
        assert head is not None
        assert await current_revision(store.engine) == head
        user = make_user("alice")
        await store.add_user(user)
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(_tables)
        assert {"users", "sessions"} <= set(tables)

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_tables) == tables
        assert await store.list_users() == [user]
    finally:
        await store.close()


async def test_upgrade_from_a_second_engine_is_a_no_op(database_url: str) -> None:
    """An engine that opens an already migrated file finds it at head and upgrades nothing."""
    first = SqlStore.from_url(database_url)
    second = SqlStore.from_url(database_url)
    try:
        await upgrade(first.engine)
        await first.add_user(make_user("alice"))
        await upgrade(second.engine)
        assert await current_revision(second.engine) == head_revision()
        assert [u.username for u in await second.list_users()] == ["alice"]
    finally:
        await first.close()
        await second.close()
