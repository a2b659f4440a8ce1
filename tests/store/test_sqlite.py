"""The store contract against the SQLite adapter, plus its migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from contract import (
    GRACE,
    T0,
    OpenStore,
    StoreContract,
    add_as_before,
    make_client,
    make_session,
    make_stored_key,
    make_user,
    rotation_of,
)
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from latchkey.core.audit import AuditEvent, AuditKind
from latchkey.store import Store
from latchkey.store.migrate import config, current_revision, head_revision, upgrade
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


async def upgrade_to(engine: AsyncEngine, revision: str) -> None:
    """Migrate to one revision (as the previous release did), not to head."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(config(sync), revision))


def _indexes(sync_connection: object, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(sync_connection).get_indexes(table)}


async def test_upgrade_through_0003_keeps_the_data(database_url: str) -> None:
    """A 0002 database with users, sessions and keys is upgraded to head: the rows are
    intact, the audit table and the feed/purge indexes exist, and the new methods work."""
    store = SqlStore.from_url(database_url)
    try:
        await upgrade_to(store.engine, "0002")
        assert await current_revision(store.engine) == "0002"
        async with store.engine.connect() as conn:
            assert "audit_events" not in await conn.run_sync(_tables)
        user = make_user("alice")
        live = make_session(1, user_id=user.id, authenticated_at=None)
        ended = make_session(
            2, user_id=user.id, revoked_at=T0 - 1, revoked_reason="logout", authenticated_at=None
        )
        key = make_stored_key("k1")
        await add_as_before(store.engine, user, [live, ended])
        await store.add_signing_key(key)

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head_revision()
        async with store.engine.connect() as conn:
            assert "audit_events" in await conn.run_sync(_tables)
            assert {
                "ix_sessions_user_id_epoch_created_at",
                "ix_sessions_revoked_at",
                "ix_sessions_idle_expires_at",
                "ix_sessions_absolute_expires_at",
            } <= await conn.run_sync(_indexes, "sessions")
        assert await store.list_users() == [user]
        assert await store.list_sessions(user.id) == [live, ended]  # same last use: by sid
        assert await store.get_session(live.sid) == live
        assert await store.get_session(ended.sid) == ended
        assert await store.list_signing_keys() == [key]
        assert await store.revoked_since(T0 - 10) == [(ended.sid, T0 - 1)]
        changed = AuditEvent(at=T0, kind=AuditKind.PASSWORD_CHANGED, user_id=user.id)
        revocation = await store.change_password(user.id, "$argon2id$new", T0, audit=[changed])
        assert revocation is not None
        assert revocation.sessions == 1
        kinds = [event.kind for event in await store.list_audit(user_id=user.id)]
        assert sorted(kinds) == [AuditKind.PASSWORD_CHANGED, AuditKind.SESSIONS_REVOKED]
        assert await store.purge(sessions_before=T0 + 1, audit_before=T0 - 1, batch=10) == 2
        assert await store.list_sessions(None) == []
    finally:
        await store.close()


async def test_upgrade_through_0004_adds_clients(database_url: str) -> None:
    """A 0003 database with users, sessions and audit rows is upgraded to head: the rows are
    intact and the clients table works."""
    store = SqlStore.from_url(database_url)
    try:
        await upgrade_to(store.engine, "0003")
        async with store.engine.connect() as conn:
            assert "clients" not in await conn.run_sync(_tables)
        user = make_user("alice")
        session = make_session(1, user_id=user.id, authenticated_at=None)
        event = AuditEvent(at=T0, kind=AuditKind.LOGIN_OK, user_id=user.id)
        await add_as_before(store.engine, user, [session], [event])

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head_revision()
        assert await store.list_users() == [user]
        assert await store.get_session(session.sid) == session
        # A session from before authenticated_at: its login is its auth_time, until the
        # password is proved again.
        assert session.auth_time == int(session.created_at)
        again = await store.reauthenticate(session.sid, user.id, T0 + 1)
        assert again is not None and again.auth_time == int(T0 + 1)
        assert [e.kind for e in await store.list_audit()] == [AuditKind.LOGIN_OK]
        client = make_client(1)
        await store.add_client(client)
        assert await store.list_clients() == [client]
    finally:
        await store.close()


async def test_upgrade_through_0005_adds_the_marks(database_url: str) -> None:
    """A 0004 database with a rotated session is upgraded to head: the session reads back
    with no marks, and its next rotations set them."""
    store = SqlStore.from_url(database_url)
    try:
        await upgrade_to(store.engine, "0004")
        session = make_session(1, authenticated_at=None)  # generation 3, rotated at T0 - 2.5
        await add_as_before(store.engine, make_user("u", user_id=session.user_id), [session])

        await upgrade(store.engine)

        assert await current_revision(store.engine) == head_revision()
        read = await store.get_session(session.sid)
        assert read == session
        assert (read.settled_generation, read.mark_generation, read.mark_at) == (0, 0, None)
        first = await store.rotate(rotation_of(session, now=T0, seed=1))
        assert first is not None
        assert (first.mark_generation, first.mark_at) == (3, session.rotated_at)
        second = await store.rotate(rotation_of(first, now=T0 + GRACE + 1, seed=2))
        assert second is not None
        assert (second.settled_generation, second.mark_generation, second.mark_at) == (3, 4, T0)
    finally:
        await store.close()
