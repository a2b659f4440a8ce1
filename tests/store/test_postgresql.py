"""The store contract against the PostgreSQL adapter (asyncpg), plus its migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from contract import OpenStore, StoreContract

from latchkey.store import Store
from latchkey.store.migrate import current_revision, head_revision, upgrade
from latchkey.store.sql import SqlStore
from support import empty_postgres

pytestmark = pytest.mark.anyio


class TestPostgresStore(StoreContract):
    """The PostgreSQL adapter on a throwaway database of the machine's server."""

    @pytest.fixture
    async def open_store(self, postgres_url: str) -> AsyncIterator[OpenStore]:
        migrated = SqlStore.from_url(postgres_url)
        await upgrade(migrated.engine)
        await migrated.close()
        empty_postgres(postgres_url)

        async def open_() -> Store:
            return SqlStore.from_url(postgres_url)

        yield open_


async def test_concurrent_migrations_are_serialised(postgres_url: str) -> None:
    """Several instances migrating at once end at head, with no error (advisory lock)."""
    import asyncio

    stores = [SqlStore.from_url(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(upgrade(store.engine) for store in stores))
        assert await current_revision(stores[0].engine) == head_revision()
    finally:
        for store in stores:
            await store.close()
