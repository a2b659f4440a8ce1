"""The store contract against the PostgreSQL adapter (asyncpg), plus its migrations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from alembic import command
from contract import (
    T0,
    OpenStore,
    StoreContract,
    add_as_before,
    make_client,
    make_session,
    make_user,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from latchkey.core.audit import AuditEvent, AuditKind
from latchkey.store import Store
from latchkey.store.migrate import config, current_revision, head_revision, upgrade
from latchkey.store.sql import SqlStore
from support import POSTGRES_URL, empty_postgres, run_sync

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


async def upgrade_to(engine: AsyncEngine, revision: str) -> None:
    """Migrate to one revision (as the previous release did), not to head."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(config(sync), revision))


@pytest.fixture
def blank_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own, never migrated (the shared one is at head already)."""
    import asyncpg

    name = f"latchkey_test_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def execute(statement: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    run_sync(lambda: execute(f'CREATE DATABASE "{name}"'))
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    run_sync(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_upgrade_through_0003_keeps_the_data(blank_postgres_url: str) -> None:
    """A 0002 database with a user and sessions is upgraded to head with the rows intact,
    and the audit trail, the revocation feed and the purge work on it."""
    store = SqlStore.from_url(blank_postgres_url)
    try:
        await upgrade_to(store.engine, "0002")
        user = make_user("alice")
        live = make_session(1, user_id=user.id, authenticated_at=None)
        ended = make_session(
            2, user_id=user.id, revoked_at=T0 - 1, revoked_reason="logout", authenticated_at=None
        )
        await add_as_before(store.engine, user, [live, ended])

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head_revision()
        assert await store.list_users() == [user]
        assert await store.list_sessions(user.id) == [live, ended]
        assert await store.revoked_since(T0 - 10) == [(ended.sid, T0 - 1)]
        changed = AuditEvent(at=T0, kind=AuditKind.PASSWORD_CHANGED, user_id=user.id)
        revocation = await store.change_password(user.id, "$argon2id$new", T0, audit=[changed])
        assert revocation is not None
        assert revocation.sessions == 1
        kinds = [event.kind for event in await store.list_audit(user_id=user.id)]
        assert sorted(kinds) == [AuditKind.PASSWORD_CHANGED, AuditKind.SESSIONS_REVOKED]
        assert await store.purge(sessions_before=T0 + 1, audit_before=T0 + 1, batch=10) == 4
        assert await store.list_sessions(None) == []
        assert await store.list_audit() == []
    finally:
        await store.close()


async def test_upgrade_through_0004_adds_clients(blank_postgres_url: str) -> None:
    """A 0003 database with a user and a session is upgraded to head with the rows intact,
    and the clients table works."""
    store = SqlStore.from_url(blank_postgres_url)
    try:
        await upgrade_to(store.engine, "0003")
        user = make_user("alice")
        session = make_session(1, user_id=user.id, authenticated_at=None)
        await add_as_before(store.engine, user, [session])

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head_revision()
        assert await store.list_users() == [user]
        assert await store.get_session(session.sid) == session
        # A session from before authenticated_at: its login is its auth_time, until the
        # password is proved again.
        assert session.auth_time == int(session.created_at)
        again = await store.reauthenticate(session.sid, user.id, T0 + 1)
        assert again is not None and again.auth_time == int(T0 + 1)
        client = make_client(1)
        await store.add_client(client)
        assert await store.client_by_id(client.id) == client
    finally:
        await store.close()
