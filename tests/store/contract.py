"""The contract every store adapter passes (docs/design.md §1: one protocol, one shared suite).

To run it against an adapter, subclass :class:`StoreContract` in a ``test_*.py`` module (name
the subclass ``Test…``) and provide one fixture, ``open_store``: an async callable that opens a
*new* store instance on one fresh, migrated, empty database per test. Every call within a test
must reach the same database (as two server processes would), so that the ``store`` and
``second_store`` fixtures below can check atomicity across instances. The suite only uses the
methods of :class:`latchkey.store.Store`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from latchkey.core.audit import AuditEvent, AuditKind
from latchkey.core.clients import Client
from latchkey.core.epochs import EpochRevocation
from latchkey.core.errors import Conflict
from latchkey.core.keyring import StoredKey
from latchkey.core.sessions import Rotation, Session, advance_marks
from latchkey.core.users import User
from latchkey.store import Store, statements

OpenStore = Callable[[], Awaitable[Store]]

T0 = 1_800_000_000.0
GRACE = 10.0
DAY = 86_400.0


def make_user(username: str, *, user_id: str | None = None, **fields: object) -> User:
    values: dict[str, object] = {
        "id": user_id or hashlib.sha256(username.encode()).hexdigest()[:32],
        "username": username,
        "password_hash": f"$argon2id$v=19$m=8,t=1,p=1$fake${username}",
        "created_at": T0,
        "scope": "read",
        **fields,
    }
    return User(**values)  # type: ignore[arg-type]


def fill(seed: int, size: int) -> bytes:
    """Deterministic bytes that include 0x00 and 0xff, to catch text-typed columns."""
    return bytes([0x00, 0xFF]) + bytes((seed * 31 + i * 7) % 256 for i in range(size - 2))


def make_session(sid_seed: int = 1, **fields: object) -> Session:
    values: dict[str, object] = {
        "sid": f"{sid_seed:032x}",
        "user_id": "u" * 32,
        "generation": 3,
        "current_hash": fill(sid_seed, 32),
        "previous_hash": fill(sid_seed + 100, 32),
        "rotation_nonce": fill(sid_seed + 200, 16),
        "rotated_at": T0 - 2.5,
        "created_at": T0 - 100.25,
        "last_used_at": T0 - 2.5,
        "idle_expires_at": T0 + 7 * DAY,
        "absolute_expires_at": T0 + 30 * DAY,
        "revoked_at": None,
        "revoked_reason": None,
        "scope": "read write",
        "user_agent": "Mozilla/5.0 (X11) — naïve agent",
        "address": "2001:db8::1",
        "authenticated_at": T0 - 50.5,
        **fields,
    }
    return Session(**values)  # type: ignore[arg-type]


def rotation_of(session: Session, *, now: float = T0, seed: int = 7, **fields: object) -> Rotation:
    """The conditional write that advances ``session`` by one generation at ``now``."""
    values: dict[str, object] = {
        "sid": session.sid,
        "expected_generation": session.generation,
        "expected_hash": session.current_hash,
        "new_generation": session.generation + 1,
        "new_hash": hashlib.sha256(b"next" + bytes([seed])).digest(),
        "nonce": fill(seed + 50, 16),
        "now": now,
        "idle_expires_at": now + 7 * DAY,
        "grace": GRACE,
        **fields,
    }
    return Rotation(**values)  # type: ignore[arg-type]


def audit_event(kind: AuditKind, *, at: float = T0, **fields: object) -> AuditEvent:
    return AuditEvent(at=at, kind=kind, **fields)  # type: ignore[arg-type]


def without_ids(events: list[AuditEvent]) -> list[AuditEvent]:
    """Events as read back, after checking the store gave each its own id, without the ids."""
    ids = [e.id for e in events]
    assert None not in ids
    assert len(set(ids)) == len(ids)
    return [dataclasses.replace(e, id=None) for e in events]


async def add_session(store: Store, session: Session, *, audit: Sequence[AuditEvent] = ()) -> None:
    """Store a session, and first its user if there is none: a session of a user with no
    row is ended (its user was deleted, core/epochs.py)."""
    if await store.user_by_id(session.user_id) is None:
        await store.add_user(make_user(f"user-{session.user_id}", user_id=session.user_id))
    await store.add_session(session, audit=audit)


async def add_as_before(
    engine: AsyncEngine,
    user: User,
    sessions: Sequence[Session] = (),
    audit: Sequence[AuditEvent] = (),
) -> None:
    """Rows as an older release wrote them: only the columns its schema has (reflected)."""
    rows = {
        "users": [statements.user_values(user)],
        "sessions": [statements.session_values(session) for session in sessions],
        "audit_events": statements.audit_rows(audit),
    }

    def insert(connection: Connection) -> None:
        for name, values in rows.items():
            if values:
                table = Table(name, MetaData(), autoload_with=connection)
                columns = set(table.c.keys())
                connection.execute(
                    table.insert(),
                    [{k: v for k, v in row.items() if k in columns} for row in values],
                )

    async with engine.begin() as conn:
        await conn.run_sync(insert)


def revoked_copy(session: Session, at: float, reason: str) -> Session:
    return dataclasses.replace(session, revoked_at=at, revoked_reason=reason)


class StoreContract:
    """Behaviour every :class:`latchkey.store.Store` adapter must have."""

    # Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def open_store(self) -> OpenStore:
        raise NotImplementedError("a StoreContract subclass provides the open_store fixture")

    @pytest.fixture
    async def store(self, open_store: OpenStore) -> AsyncIterator[Store]:
        instance = await open_store()
        yield instance
        await instance.close()

    @pytest.fixture
    async def second_store(self, open_store: OpenStore, store: Store) -> AsyncIterator[Store]:
        instance = await open_store()
        yield instance
        await instance.close()

    # --- users ---------------------------------------------------------------------------

    async def test_add_and_get_user(self, store: Store) -> None:
        """A user added is found by its username key and by its id, field for field."""
        user = make_user("Alice", scope="read write", disabled_at=T0 + 5.5)
        await store.add_user(user)
        assert await store.user_by_name("alice") == user
        assert await store.user_by_id(user.id) == user

    async def test_duplicate_username_key_conflicts(self, store: Store) -> None:
        """A second user whose name has the same key raises Conflict and is not stored."""
        await store.add_user(make_user("alice"))
        with pytest.raises(Conflict):
            await store.add_user(make_user("ALICE", user_id="b" * 32))
        assert await store.user_by_id("b" * 32) is None
        assert [u.username for u in await store.list_users()] == ["alice"]

    async def test_unknown_user_is_none(self, store: Store) -> None:
        """Looking up a name or id that was never added returns None."""
        await store.add_user(make_user("alice"))
        assert await store.user_by_name("bob") is None
        assert await store.user_by_id("0" * 32) is None

    async def test_list_users_is_ordered_by_username_key(self, store: Store) -> None:
        """list_users returns every user, ordered by the case-insensitive username key."""
        for name in ["carol", "Alice", "dave", "bob"]:
            await store.add_user(make_user(name))
        assert [u.username for u in await store.list_users()] == ["Alice", "bob", "carol", "dave"]

    async def test_list_users_empty(self, store: Store) -> None:
        """A fresh store lists no users."""
        assert await store.list_users() == []
        assert await store.has_users() is False

    async def test_has_users_once_one_is_added(self, store: Store) -> None:
        """has_users is true from the first user on, and false again once it is deleted."""
        alice = make_user("alice")
        await store.add_user(alice)
        assert await store.has_users() is True
        await store.delete_user(alice.id, 1000.0)
        assert await store.has_users() is False

    async def test_set_password_hash(self, store: Store) -> None:
        """set_password_hash replaces one user's hash and leaves the others alone."""
        alice, bob = make_user("alice"), make_user("bob")
        await store.add_user(alice)
        await store.add_user(bob)
        await store.set_password_hash(alice.id, "$argon2id$new")
        assert await store.user_by_id(alice.id) == dataclasses.replace(
            alice, password_hash="$argon2id$new"
        )
        assert await store.user_by_id(bob.id) == bob

    # --- sessions ------------------------------------------------------------------------

    async def test_session_roundtrip_of_every_field(self, store: Store) -> None:
        """Every field of a session, bytes and optional ones included, reads back unchanged."""
        full = make_session(1, revoked_at=T0 - 1.75, revoked_reason="logout")
        fresh = make_session(
            2,
            generation=0,
            previous_hash=None,
            rotation_nonce=None,
            rotated_at=None,
            scope="",
            user_agent=None,
            address=None,
            authenticated_at=None,
        )
        for session in (full, fresh):
            await add_session(store, session)
        for session in (full, fresh):
            got = await store.get_session(session.sid)
            assert got == session
            assert got is not None
            assert type(got.current_hash) is bytes
            assert got.previous_hash is None or type(got.previous_hash) is bytes
            assert got.rotation_nonce is None or type(got.rotation_nonce) is bytes

    async def test_unknown_session_is_none(self, store: Store) -> None:
        """get_session of a sid never added returns None."""
        assert await store.get_session("f" * 32) is None

    async def test_rotate_returns_the_new_row(self, store: Store) -> None:
        """A rotation with the current generation and hash applies and returns the new row."""
        session = make_session()
        await add_session(store, session)
        rotation = rotation_of(session, now=T0 + 60)
        row = await store.rotate(rotation)
        marks = advance_marks(session, rotation.now, GRACE)
        expected = dataclasses.replace(
            session,
            settled_generation=marks.settled_generation,
            mark_generation=marks.mark_generation,
            mark_at=marks.mark_at,
            generation=rotation.new_generation,
            current_hash=rotation.new_hash,
            previous_hash=session.current_hash,
            rotation_nonce=rotation.nonce,
            rotated_at=rotation.now,
            last_used_at=rotation.now,
            idle_expires_at=rotation.idle_expires_at,
        )
        assert row == expected
        assert await store.get_session(session.sid) == expected

    @pytest.mark.parametrize("gaps", [[1, 1, 1, 1], [11, 11, 11], [1, 10, 0.5, 10.5, 3, 30]])
    async def test_rotate_moves_the_marks_as_the_core_does(
        self, store: Store, gaps: list[float]
    ) -> None:
        """The conditional write computes the marks exactly as core.sessions.advance_marks."""
        session = make_session()
        await add_session(store, session)
        now = T0
        for seed, gap in enumerate(gaps):
            now += gap
            marks = advance_marks(session, now, GRACE)
            row = await store.rotate(rotation_of(session, now=now, seed=seed))
            assert row is not None
            assert (row.settled_generation, row.mark_generation, row.mark_at) == (
                marks.settled_generation,
                marks.mark_generation,
                marks.mark_at,
            )
            session = row
        assert session.settled_generation > 0 or gaps[0] < GRACE

    async def test_rotate_twice_with_same_expectation_fails(self, store: Store) -> None:
        """The second rotation with the same expectation matches nothing (compare-and-swap)."""
        session = make_session()
        await add_session(store, session)
        first = await store.rotate(rotation_of(session, seed=1))
        assert first is not None
        assert await store.rotate(rotation_of(session, seed=2)) is None
        assert await store.get_session(session.sid) == first

    async def test_rotate_with_wrong_hash_fails(self, store: Store) -> None:
        """A rotation whose expected hash is not the current one leaves the row unchanged."""
        session = make_session()
        await add_session(store, session)
        assert await store.rotate(rotation_of(session, expected_hash=b"\x01" * 32)) is None
        assert await store.rotate(rotation_of(session, expected_hash=session.previous_hash)) is None
        assert await store.get_session(session.sid) == session

    async def test_rotate_with_wrong_generation_fails(self, store: Store) -> None:
        """A rotation whose expected generation is not the current one matches nothing."""
        session = make_session()
        await add_session(store, session)
        for generation in (session.generation - 1, session.generation + 1):
            assert await store.rotate(rotation_of(session, expected_generation=generation)) is None
        assert await store.get_session(session.sid) == session

    async def test_rotate_of_unknown_session_fails(self, store: Store) -> None:
        """A rotation of a sid that does not exist returns None and creates nothing."""
        ghost = make_session(9)
        assert await store.rotate(rotation_of(ghost)) is None
        assert await store.get_session(ghost.sid) is None

    async def test_rotate_of_revoked_session_fails(self, store: Store) -> None:
        """A revoked session is never rotated, even with the right generation and hash."""
        session = make_session()
        await add_session(store, session)
        assert await store.revoke_session(session.sid, "logout", T0 - 1) is True
        assert await store.rotate(rotation_of(session)) is None
        got = await store.get_session(session.sid)
        assert got is not None
        assert got.generation == session.generation
        assert got.current_hash == session.current_hash

    @pytest.mark.parametrize("late", [0.0, 0.5, DAY])
    async def test_rotate_of_idle_expired_session_fails(self, store: Store, late: float) -> None:
        """At or past the idle expiry the rotation matches nothing."""
        session = make_session(idle_expires_at=T0 + 100, absolute_expires_at=T0 + 30 * DAY)
        await add_session(store, session)
        assert await store.rotate(rotation_of(session, now=T0 + 100 + late)) is None
        assert await store.get_session(session.sid) == session

    @pytest.mark.parametrize("late", [0.0, 0.5, DAY])
    async def test_rotate_of_absolute_expired_session_fails(
        self, store: Store, late: float
    ) -> None:
        """At or past the absolute expiry the rotation matches nothing, whatever the idle one."""
        session = make_session(idle_expires_at=T0 + 30 * DAY, absolute_expires_at=T0 + 100)
        await add_session(store, session)
        assert await store.rotate(rotation_of(session, now=T0 + 100 + late)) is None
        assert await store.get_session(session.sid) == session

    async def test_rotate_just_before_expiry_succeeds(self, store: Store) -> None:
        """A rotation an instant before both expiries still applies."""
        session = make_session(idle_expires_at=T0 + 100, absolute_expires_at=T0 + 200)
        await add_session(store, session)
        assert await store.rotate(rotation_of(session, now=T0 + 99.5)) is not None

    async def test_revoke_session(self, store: Store) -> None:
        """revoke_session is True once, then False; it records when and why."""
        session = make_session()
        await add_session(store, session)
        assert await store.revoke_session(session.sid, "reuse_detected", T0 + 1.5) is True
        assert await store.revoke_session(session.sid, "logout", T0 + 9) is False
        got = await store.get_session(session.sid)
        assert got == dataclasses.replace(
            session, revoked_at=T0 + 1.5, revoked_reason="reuse_detected"
        )

    async def test_reauthenticate(self, store: Store) -> None:
        """reauthenticate records the instant in a live session of that user and writes its
        audit event; unknown, someone else's, revoked or expired sessions: None, nothing
        written."""
        live = make_session(1, authenticated_at=None)
        revoked = make_session(2, revoked_at=T0 - 1, revoked_reason="logout")
        expired = make_session(3, idle_expires_at=T0 - 1)
        for session in (live, revoked, expired):
            await add_session(store, session)
        event = audit_event(AuditKind.REAUTHENTICATED, at=T0 + 5, sid=live.sid)
        got = await store.reauthenticate(live.sid, live.user_id, T0 + 5.5, audit=event)
        assert got == dataclasses.replace(live, authenticated_at=T0 + 5.5)
        assert got.auth_time == int(T0 + 5.5)
        assert await store.get_session(live.sid) == got
        assert live.auth_time == int(live.created_at)  # NULL: the login
        assert await store.reauthenticate(live.sid, "v" * 32, T0 + 6, audit=event) is None
        for session in (revoked, expired):
            assert await store.reauthenticate(session.sid, session.user_id, T0, audit=event) is None
            assert await store.get_session(session.sid) == session
        assert await store.reauthenticate("e" * 32, live.user_id, T0, audit=event) is None
        assert without_ids(await store.list_audit()) == [event]
        # Every session of the user ended at once (its epoch went up): none to re-authenticate.
        await store.revoke_user_sessions(live.user_id, "logout_all", T0 + 7)
        assert await store.reauthenticate(live.sid, live.user_id, T0 + 8, audit=event) is None
        assert without_ids(await store.list_audit()) == [event]

    async def test_revoke_unknown_session(self, store: Store) -> None:
        """Revoking a sid that does not exist returns False."""
        assert await store.revoke_session("e" * 32, "logout", T0) is False

    async def test_revoke_touches_only_that_session(self, store: Store) -> None:
        """Revoking one session leaves another of the same user live."""
        one, two = make_session(1), make_session(2)
        await add_session(store, one)
        await add_session(store, two)
        await store.revoke_session(one.sid, "logout", T0)
        assert await store.get_session(two.sid) == two

    async def test_ping(self, store: Store) -> None:
        """ping succeeds on a reachable store."""
        await store.ping()

    # --- atomicity (docs/design.md §2) -----------------------------------------------------------

    async def test_concurrent_rotations_one_winner(self, store: Store) -> None:
        """Of 20 concurrent rotations with one expectation, exactly one applies."""
        session = make_session()
        await add_session(store, session)
        results = await asyncio.gather(
            *(store.rotate(rotation_of(session, seed=i)) for i in range(20))
        )
        winners = [row for row in results if row is not None]
        assert len(winners) == 1
        assert await store.get_session(session.sid) == winners[0]
        assert winners[0].generation == session.generation + 1

    async def test_concurrent_rotations_across_instances_one_winner(
        self, store: Store, second_store: Store
    ) -> None:
        """Of 20 concurrent rotations split over two store instances, exactly one applies."""
        session = make_session()
        await add_session(store, session)
        instances = (store, second_store)
        results = await asyncio.gather(
            *(instances[i % 2].rotate(rotation_of(session, seed=i)) for i in range(20))
        )
        winners = [row for row in results if row is not None]
        assert len(winners) == 1
        assert await second_store.get_session(session.sid) == winners[0]
        assert await store.get_session(session.sid) == winners[0]

    async def test_instances_share_the_database(self, store: Store, second_store: Store) -> None:
        """What one instance writes, another instance on the same database reads."""
        user = make_user("alice")
        await store.add_user(user)
        assert await second_store.user_by_name("alice") == user

    # --- signing keys --------------------------------------------------------------------

    async def test_signing_keys_roundtrip(self, store: Store) -> None:
        """A stored key comes back field for field; the list starts empty."""
        assert await store.list_signing_keys() == []
        key = make_stored_key("k1")
        assert await store.add_signing_key(key)
        assert await store.list_signing_keys() == [key]

    async def test_first_key_is_created_once(self, store: Store, second_store: Store) -> None:
        """Of many concurrent "create the first key" calls on two instances, one stores a key."""
        results = await asyncio.gather(
            *(
                (store, second_store)[i % 2].add_signing_key(
                    make_stored_key(f"k{i}"), only_if_none=True
                )
                for i in range(10)
            )
        )
        assert sum(results) == 1
        assert len(await second_store.list_signing_keys()) == 1

    async def test_only_if_none_ignores_retired_keys(self, store: Store) -> None:
        """A retired key does not count: a first active key can still be created."""
        await store.add_signing_key(make_stored_key("old", retired_at=T0))
        assert await store.add_signing_key(make_stored_key("new"), only_if_none=True)
        assert not await store.add_signing_key(make_stored_key("newer"), only_if_none=True)

    async def test_scheduled_rotation_adds_one_key(self, store: Store, second_store: Store) -> None:
        """Of many concurrent "rotate unless a key was created after" calls on two instances,
        one stores a key; a key created at the threshold does not count."""
        since = T0 + 90 * DAY
        await store.add_signing_key(make_stored_key("old", created_at=since))
        results = await asyncio.gather(
            *(
                (store, second_store)[i % 2].add_signing_key(
                    make_stored_key(f"k{i}", created_at=since + 1), only_if_none_after=since
                )
                for i in range(10)
            )
        )
        assert sum(results) == 1
        assert len(await second_store.list_signing_keys()) == 2

    async def test_delete_signing_keys_spares_the_newest(self, store: Store) -> None:
        """Listed keys are deleted, never the most recently created key of all."""
        for i in range(3):
            await store.add_signing_key(make_stored_key(f"k{i}", created_at=T0 + i))
        assert await store.delete_signing_keys([]) == 0
        assert await store.delete_signing_keys(["k0", "k2", "unknown"]) == 1
        assert sorted(key.kid for key in await store.list_signing_keys()) == ["k1", "k2"]

    async def test_withdraw_signing_keys_keeps_one(self, store: Store) -> None:
        """Every key but the one kept gets retired_at; nothing happens if that one is unknown."""
        await store.add_signing_key(make_stored_key("a"))
        await store.add_signing_key(make_stored_key("b", retired_at=T0 - 1))
        await store.add_signing_key(make_stored_key("c", created_at=T0 + 1))
        assert await store.withdraw_signing_keys(keep="missing", at=T0 + 5) == []
        assert await store.withdraw_signing_keys(keep="c", at=T0 + 5) == ["a"]
        retired = {key.kid: key.retired_at for key in await store.list_signing_keys()}
        assert retired == {"a": T0 + 5, "b": T0 - 1, "c": None}

    # --- audit written with the change, and only when it happened ------------------------

    async def test_add_user_writes_its_audit_events(self, store: Store) -> None:
        """add_user stores its events with the user; a duplicate name stores neither."""
        user = make_user("alice")
        created = audit_event(
            AuditKind.USER_CREATED, user_id=user.id, username="alice", address="192.0.2.1"
        )
        await store.add_user(user, audit=[created])
        assert without_ids(await store.list_audit()) == [created]
        twin = make_user("ALICE", user_id="b" * 32)
        with pytest.raises(Conflict):
            await store.add_user(
                twin, audit=[audit_event(AuditKind.USER_REGISTERED, at=T0 + 1, user_id=twin.id)]
            )
        assert without_ids(await store.list_audit()) == [created]

    async def test_add_session_writes_its_audit_events(self, store: Store) -> None:
        """add_session stores its events with the session; a duplicate sid stores neither."""
        session = make_session(1)
        login = audit_event(
            AuditKind.LOGIN_OK, user_id=session.user_id, sid=session.sid, user_agent="agent"
        )
        await add_session(store, session, audit=[login])
        assert without_ids(await store.list_audit()) == [login]
        clash = make_session(1, generation=0, user_id="v" * 32)
        with pytest.raises(Exception):  # noqa: B017 - whichever error the adapter raises
            await add_session(
                store, clash, audit=[audit_event(AuditKind.LOGIN_OK, at=T0 + 1, sid=clash.sid)]
            )
        assert await store.get_session(session.sid) == session
        assert without_ids(await store.list_audit()) == [login]

    async def test_rotate_fills_the_audit_template(self, store: Store) -> None:
        """A rotation that applies writes the template with the row's user_id and sid."""
        session = make_session()
        await add_session(store, session)
        template = audit_event(AuditKind.REFRESH, at=T0 + 60, address="198.51.100.2")
        assert await store.rotate(rotation_of(session, now=T0 + 60), audit=template) is not None
        assert without_ids(await store.list_audit()) == [
            dataclasses.replace(template, user_id=session.user_id, sid=session.sid)
        ]

    async def test_failed_rotation_writes_no_audit(self, store: Store) -> None:
        """A rotation that matches nothing (stale, unknown, revoked) writes no event."""
        session = make_session(1)
        revoked = make_session(2, revoked_at=T0 - 5, revoked_reason="logout")
        await add_session(store, session)
        await add_session(store, revoked)
        template = audit_event(AuditKind.REFRESH)
        for rotation in (
            rotation_of(session, expected_hash=b"\x01" * 32),
            rotation_of(make_session(9)),
            rotation_of(revoked),
        ):
            assert await store.rotate(rotation, audit=template) is None
        assert await store.list_audit() == []

    async def test_revoke_session_fills_the_audit_template(self, store: Store) -> None:
        """revoke_session writes its template with the row's user_id and the sid, once."""
        session = make_session()
        await add_session(store, session)
        template = audit_event(AuditKind.SESSION_REVOKED, at=T0 + 3, reason="admin")
        assert await store.revoke_session(session.sid, "admin", T0 + 3, audit=template)
        assert not await store.revoke_session(session.sid, "admin", T0 + 4, audit=template)
        assert not await store.revoke_session("e" * 32, "admin", T0 + 4, audit=template)
        assert without_ids(await store.list_audit()) == [
            dataclasses.replace(template, user_id=session.user_id, sid=session.sid)
        ]

    # --- revoking as a user: own sessions only --------------------------------------------

    async def test_revoke_session_of_that_user_only(self, store: Store) -> None:
        """With user_id, only that user's live session is revoked; False for someone else's
        session (which stays live), an unknown sid, or one revoked already."""
        mine = make_session(1, user_id="a" * 32)
        theirs = make_session(2, user_id="b" * 32)
        await add_session(store, mine)
        await add_session(store, theirs)
        template = audit_event(AuditKind.SESSION_REVOKED, at=T0 + 1, reason="revoked_by_user")
        assert not await store.revoke_session(
            theirs.sid, "revoked_by_user", T0 + 1, user_id="a" * 32, audit=template
        )
        assert await store.get_session(theirs.sid) == theirs
        assert not await store.revoke_session(
            "e" * 32, "revoked_by_user", T0 + 1, user_id="a" * 32, audit=template
        )
        assert await store.revoke_session(
            mine.sid, "revoked_by_user", T0 + 1, user_id="a" * 32, audit=template
        )
        assert not await store.revoke_session(
            mine.sid, "logout", T0 + 2, user_id="a" * 32, audit=template
        )
        assert await store.get_session(mine.sid) == revoked_copy(mine, T0 + 1, "revoked_by_user")
        assert await store.get_session(theirs.sid) == theirs
        assert without_ids(await store.list_audit()) == [
            dataclasses.replace(template, user_id="a" * 32, sid=mine.sid)
        ]

    async def test_revoke_user_sessions(self, store: Store) -> None:
        """Every live session of the user but except_sid ends at once: the user's epoch goes
        up and the kept session moves to it; one audit event carries the count of live
        sessions ended; others' and already revoked sessions are untouched; the revocation
        is on the feed."""
        alice, bob = "a" * 32, "b" * 32
        keep = make_session(1, user_id=alice)
        live = [make_session(seed, user_id=alice) for seed in (2, 3, 4)]
        old = make_session(5, user_id=alice, revoked_at=T0 - 9, revoked_reason="logout")
        other = make_session(6, user_id=bob)
        for session in (keep, *live, old, other):
            await add_session(store, session)
        template = audit_event(AuditKind.SESSIONS_REVOKED, at=T0 + 7, address="192.0.2.9")
        revocation = await store.revoke_user_sessions(
            alice, "logout_all", T0 + 7, except_sid=keep.sid, audit=template
        )
        assert revocation == EpochRevocation(
            alice, 1, T0 + 7, "logout_all", kept_sid=keep.sid, sessions=3
        )
        for session in live:
            assert await store.get_session(session.sid) == revoked_copy(
                session, T0 + 7, "logout_all"
            )
        assert await store.get_session(keep.sid) == dataclasses.replace(keep, epoch=1)
        for untouched in (old, other):
            assert await store.get_session(untouched.sid) == untouched
        assert [s.sid for s in await store.list_sessions(alice, live_at=T0 + 7)] == [keep.sid]
        assert without_ids(await store.list_audit()) == [
            dataclasses.replace(template, user_id=alice, sid=keep.sid, reason="logout_all", count=3)
        ]
        assert await store.user_revocations_since(T0) == [revocation]
        # Without except_sid the kept one goes too; then none is left: a count of 0.
        assert await store.revoke_user_sessions(alice, "admin", T0 + 8) == EpochRevocation(
            alice, 2, T0 + 8, "admin", sessions=1
        )
        last = await store.revoke_user_sessions(alice, "admin", T0 + 9)
        assert last is not None
        assert last.sessions == 0
        assert await store.revoke_user_sessions("0" * 32, "admin", T0 + 9) is None
        assert await store.get_session(other.sid) == other
        assert [r.epoch for r in await store.user_revocations_since(T0 + 8)] == [2, 3]
        assert await store.user_revocations_since(T0 + 8, limit=1) == [
            EpochRevocation(alice, 2, T0 + 8, "admin", sessions=1)
        ]

    async def test_a_session_of_an_ended_epoch_does_not_rotate(self, store: Store) -> None:
        """After a mass revocation the ended sessions' tokens match nothing, the kept one
        rotates on; a session of a deleted user does not rotate either."""
        alice, bob = make_user("alice"), make_user("bob")
        await store.add_user(alice)
        await store.add_user(bob)
        ended, kept = make_session(1, user_id=alice.id), make_session(2, user_id=alice.id)
        bobs = make_session(3, user_id=bob.id)
        for session in (ended, kept, bobs):
            await add_session(store, session)
        await store.revoke_user_sessions(alice.id, "logout_all", T0, except_sid=kept.sid)
        assert await store.rotate(rotation_of(ended, now=T0 + 1)) is None
        rotated = await store.rotate(rotation_of(kept, now=T0 + 1))
        assert rotated is not None
        assert rotated.epoch == 1
        assert await store.delete_user(bob.id, T0 + 2) is not None
        assert await store.rotate(rotation_of(bobs, now=T0 + 3)) is None
        got = await store.get_session(bobs.sid)
        assert got is not None
        assert got.revoked_reason == "user_deleted"
        assert await store.list_sessions(live_at=T0 + 3) == [rotated]

    async def test_purge_follows_mass_revocations(self, store: Store) -> None:
        """Sessions a mass revocation ended are deleted one access-token lifetime later, in
        batches; the revocation's row goes with the last of them; the kept session stays."""
        alice = make_user("alice")
        await store.add_user(alice)
        sessions = [make_session(seed, user_id=alice.id) for seed in range(1, 6)]
        for session in sessions:
            await add_session(store, session)
        kept = sessions[0]
        await store.revoke_user_sessions(alice.id, "logout_all", T0, except_sid=kept.sid)
        assert await store.purge(sessions_before=T0, audit_before=0, batch=10) == 0
        assert await store.purge(sessions_before=T0 + 1, audit_before=0, batch=3) == 3
        assert await store.user_revocations_since(0) != []
        assert await store.purge(sessions_before=T0 + 1, audit_before=0, batch=3) == 1
        assert await store.user_revocations_since(0) == []
        assert [s.sid for s in await store.list_sessions()] == [kept.sid]
        assert await store.purge(sessions_before=T0 + 1, audit_before=0, batch=3) == 0

    async def test_end_oldest_sessions(self, store: Store) -> None:
        """The user's live sessions of the epoch past the ``keep`` most recently opened are
        revoked, at most ``batch`` at a time, each audited; ended, expired, other epochs' and
        other users' sessions do not count."""
        alice, bob = "a" * 32, "b" * 32
        opened = [make_session(n, user_id=alice, created_at=T0 - 100 + n) for n in range(1, 7)]
        revoked = make_session(7, user_id=alice, created_at=T0 - 500, revoked_at=T0 - 1)
        expired = make_session(8, user_id=alice, created_at=T0 - 400, idle_expires_at=T0)
        other = make_session(9, user_id=bob, created_at=T0 - 300)
        for session in (*opened, revoked, expired, other):
            await add_session(store, session)
        template = audit_event(AuditKind.SESSION_REVOKED, at=T0, reason="session_limit")
        args = {"keep": 3, "now": T0, "reason": "session_limit", "audit": template}
        # The first past the cap first: a batch is bounded, the next login takes the rest.
        ended = await store.end_oldest_sessions(alice, 0, batch=2, **args)
        assert ended == sorted(s.sid for s in opened[1:3])
        assert await store.end_oldest_sessions(alice, 0, batch=2, **args) == [opened[0].sid]
        assert await store.end_oldest_sessions(alice, 0, batch=2, **args) == []
        assert await store.end_oldest_sessions(alice, 1, batch=2, keep=0, now=T0, reason="x") == []
        for session in opened[:3]:
            assert await store.get_session(session.sid) == revoked_copy(
                session, T0, "session_limit"
            )
        for session in (*opened[3:], revoked, expired, other):
            assert await store.get_session(session.sid) == session
        events = without_ids(await store.list_audit())
        assert sorted(e.sid or "" for e in events) == sorted(s.sid for s in opened[:3])
        assert {(e.user_id, e.reason) for e in events} == {(alice, "session_limit")}

    # --- listing sessions, the revocation feed --------------------------------------------

    async def test_list_sessions_most_recently_used_first(self, store: Store) -> None:
        """All sessions, or one user's, most recently used first, revoked ones included."""
        alice, bob = "a" * 32, "b" * 32
        a1 = make_session(1, user_id=alice, last_used_at=T0 - 30)
        a2 = make_session(2, user_id=alice, last_used_at=T0 - 10, revoked_at=T0 - 5)
        a3 = make_session(3, user_id=alice, last_used_at=T0 - 20)
        b1 = make_session(4, user_id=bob, last_used_at=T0 - 15)
        for session in (a1, a2, a3, b1):
            await add_session(store, session)
        assert await store.list_sessions() == [a2, b1, a3, a1]
        assert await store.list_sessions(None) == [a2, b1, a3, a1]
        assert await store.list_sessions(alice) == [a2, a3, a1]
        assert await store.list_sessions(bob) == [b1]
        assert await store.list_sessions("c" * 32) == []

    async def test_list_sessions_live_at(self, store: Store) -> None:
        """With live_at, revoked, idle-expired and absolute-expired sessions are left out
        (an expiry equal to live_at counts as expired, as for rotation)."""
        alice = "a" * 32
        live = make_session(1, user_id=alice, last_used_at=T0 - 1)
        almost = make_session(2, user_id=alice, idle_expires_at=T0 + 0.5, last_used_at=T0 - 2)
        revoked = make_session(3, user_id=alice, revoked_at=T0 - 1, revoked_reason="logout")
        idle = make_session(4, user_id=alice, idle_expires_at=T0)
        absolute = make_session(5, user_id=alice, absolute_expires_at=T0 - 1)
        elsewhere = make_session(6, user_id="b" * 32, last_used_at=T0 - 3)
        for session in (live, almost, revoked, idle, absolute, elsewhere):
            await add_session(store, session)
        assert await store.list_sessions(alice, live_at=T0) == [live, almost]
        assert await store.list_sessions(None, live_at=T0) == [live, almost, elsewhere]
        assert await store.list_sessions(alice, live_at=T0 + 1) == [live]
        assert await store.list_sessions(alice, live_at=T0 - 2) == [live, almost, idle, absolute]

    async def test_revoked_since(self, store: Store) -> None:
        """(sid, revoked_at) of sessions revoked at or after ``since``, oldest first, at most
        ``limit``; live sessions never appear."""
        sessions = [make_session(seed) for seed in range(1, 6)]
        for session in sessions:
            await add_session(store, session)
        # Revoked out of order; the fifth stays live.
        for session, at in zip(sessions[:4], (T0 + 3, T0 + 1, T0 + 4, T0 + 2), strict=True):
            assert await store.revoke_session(session.sid, "logout", at)
        s = [session.sid for session in sessions]
        assert await store.revoked_since(T0) == [
            (s[1], T0 + 1),
            (s[3], T0 + 2),
            (s[0], T0 + 3),
            (s[2], T0 + 4),
        ]
        assert await store.revoked_since(T0 + 2) == [(s[3], T0 + 2), (s[0], T0 + 3), (s[2], T0 + 4)]
        assert await store.revoked_since(T0 + 2.5, limit=1) == [(s[0], T0 + 3)]
        assert await store.revoked_since(T0 + 4) == [(s[2], T0 + 4)]
        assert await store.revoked_since(T0 + 4.001) == []

    # --- users: password change, disable, delete ------------------------------------------

    async def test_change_password_keeps_one_session(self, store: Store) -> None:
        """The hash is set and every live session but keep_sid ended (password_changed), with
        one SESSIONS_REVOKED event counting them; other users are untouched."""
        alice, bob = make_user("alice"), make_user("bob")
        await store.add_user(alice)
        await store.add_user(bob)
        keep = make_session(1, user_id=alice.id)
        others = [make_session(seed, user_id=alice.id) for seed in (2, 3)]
        old = make_session(4, user_id=alice.id, revoked_at=T0 - 9, revoked_reason="logout")
        bobs = make_session(5, user_id=bob.id)
        for session in (keep, *others, old, bobs):
            await add_session(store, session)
        changed = audit_event(
            AuditKind.PASSWORD_CHANGED, at=T0 + 10, user_id=alice.id, sid=keep.sid, reason="self"
        )
        revocation = await store.change_password(
            alice.id, "$argon2id$new", T0 + 10, keep_sid=keep.sid, audit=[changed]
        )
        assert revocation == EpochRevocation(
            alice.id, 1, T0 + 10, "password_changed", kept_sid=keep.sid, sessions=2
        )
        assert await store.user_by_id(alice.id) == dataclasses.replace(
            alice, password_hash="$argon2id$new", epoch=1, not_before=T0 + 10
        )
        assert await store.user_by_id(bob.id) == bob
        for session in others:
            assert await store.get_session(session.sid) == revoked_copy(
                session, T0 + 10, "password_changed"
            )
        assert await store.get_session(keep.sid) == dataclasses.replace(keep, epoch=1)
        for untouched in (old, bobs):
            assert await store.get_session(untouched.sid) == untouched
        events = without_ids(await store.list_audit())
        assert changed in events
        assert [
            (e.user_id, e.sid, e.reason, e.at, e.count)
            for e in events
            if e.kind is AuditKind.SESSIONS_REVOKED
        ] == [(alice.id, keep.sid, "password_changed", T0 + 10, 2)]
        assert len(events) == 2

    async def test_change_password_without_keep_revokes_all(self, store: Store) -> None:
        """An administrator's reset (no keep_sid) revokes every live session of the user."""
        alice = make_user("alice")
        await store.add_user(alice)
        sessions = [make_session(seed, user_id=alice.id) for seed in (1, 2)]
        for session in sessions:
            await add_session(store, session)
        revocation = await store.change_password(alice.id, "$argon2id$reset", T0 + 1)
        assert revocation is not None
        assert (revocation.sessions, revocation.kept_sid) == (2, None)
        assert await store.list_sessions(alice.id, live_at=T0 + 1) == []
        user = await store.user_by_id(alice.id)
        assert user is not None
        assert user.password_hash == "$argon2id$reset"

    async def test_change_password_of_unknown_user(self, store: Store) -> None:
        """For an unknown user nothing changes and no event is written."""
        await store.add_user(make_user("alice"))
        revoked = await store.change_password(
            "0" * 32,
            "$argon2id$new",
            T0,
            audit=[audit_event(AuditKind.PASSWORD_CHANGED, user_id="0" * 32)],
        )
        assert revoked is None
        assert await store.list_audit() == []
        assert await store.user_by_id("0" * 32) is None

    async def test_disable_revokes_every_session(self, store: Store) -> None:
        """Disabling sets disabled_at and ends every live session (user_disabled), audited
        once with the count; enabling clears disabled_at and ends none; ended ones stay so."""
        alice, bob = make_user("alice"), make_user("bob")
        await store.add_user(alice)
        await store.add_user(bob)
        sessions = [make_session(seed, user_id=alice.id) for seed in (1, 2)]
        bobs = make_session(3, user_id=bob.id)
        for session in (*sessions, bobs):
            await add_session(store, session)
        disabled = audit_event(AuditKind.USER_DISABLED, at=T0 + 5, user_id=alice.id)
        revoked = await store.set_user_disabled(alice.id, T0 + 5, disabled=True, audit=[disabled])
        assert revoked == EpochRevocation(alice.id, 1, T0 + 5, "user_disabled", sessions=2)
        ended = dataclasses.replace(alice, epoch=1, not_before=T0 + 5)
        assert await store.user_by_id(alice.id) == dataclasses.replace(ended, disabled_at=T0 + 5)
        for session in sessions:
            assert await store.get_session(session.sid) == revoked_copy(
                session, T0 + 5, "user_disabled"
            )
        assert await store.get_session(bobs.sid) == bobs
        events = without_ids(await store.list_audit())
        assert disabled in events
        assert [
            (e.user_id, e.sid, e.reason, e.count)
            for e in events
            if e.kind is AuditKind.SESSIONS_REVOKED
        ] == [(alice.id, None, "user_disabled", 2)]

        # A session that appears while disabled (say, by a race) survives enabling.
        late = make_session(4, user_id=alice.id, epoch=1)
        await add_session(store, late)
        enabled = audit_event(AuditKind.USER_ENABLED, at=T0 + 9, user_id=alice.id)
        assert (
            await store.set_user_disabled(alice.id, T0 + 9, disabled=False, audit=[enabled]) is True
        )
        assert await store.user_by_id(alice.id) == ended
        assert await store.get_session(late.sid) == late
        for session in sessions:
            got = await store.get_session(session.sid)
            assert got is not None
            assert got.revoked_reason == "user_disabled"
        assert (await store.list_audit(limit=1))[0].kind is AuditKind.USER_ENABLED

    async def test_disable_unknown_user(self, store: Store) -> None:
        """Disabling or enabling an unknown user returns False and writes nothing."""
        session = make_session(1, user_id="9" * 32)
        await add_session(store, session)
        for disabled in (True, False):
            event = audit_event(AuditKind.USER_DISABLED, user_id="0" * 32)
            assert (
                await store.set_user_disabled("0" * 32, T0, disabled=disabled, audit=[event])
                is False
            )
        assert await store.list_audit() == []
        assert await store.get_session(session.sid) == session

    async def test_delete_user(self, store: Store) -> None:
        """The user row goes; its sessions end (user_deleted) but are kept until the purge,
        audited once with the count; the user's name is free again; others are untouched."""
        alice, bob = make_user("alice"), make_user("bob")
        await store.add_user(alice)
        await store.add_user(bob)
        sessions = [make_session(seed, user_id=alice.id) for seed in (1, 2)]
        bobs = make_session(3, user_id=bob.id)
        for session in (*sessions, bobs):
            await add_session(store, session)
        deleted = audit_event(AuditKind.USER_DELETED, at=T0 + 2, user_id=alice.id, username="alice")
        revoked = await store.delete_user(alice.id, T0 + 2, audit=[deleted])
        assert revoked == EpochRevocation(alice.id, 1, T0 + 2, "user_deleted", sessions=2)
        assert await store.user_by_id(alice.id) is None
        assert await store.user_by_name("alice") is None
        assert await store.list_users() == [bob]
        for session in sessions:
            got = await store.get_session(session.sid)
            assert got is not None
            assert got.revoked_reason == "user_deleted"
            assert got.revoked_at is not None
        assert await store.get_session(bobs.sid) == bobs
        events = without_ids(await store.list_audit(user_id=alice.id))
        assert deleted in events
        assert [
            (e.sid, e.reason, e.count) for e in events if e.kind is AuditKind.SESSIONS_REVOKED
        ] == [(None, "user_deleted", 2)]
        await store.add_user(make_user("alice", user_id="c" * 32))  # the name is free again

    async def test_delete_unknown_user(self, store: Store) -> None:
        """Deleting an unknown (or already deleted) user returns None and writes nothing."""
        alice = make_user("alice")
        await store.add_user(alice)
        assert await store.delete_user(alice.id, T0) == EpochRevocation(
            alice.id, 1, T0, "user_deleted"
        )
        event = audit_event(AuditKind.USER_DELETED, user_id=alice.id)
        assert await store.delete_user(alice.id, T0 + 1, audit=[event]) is None
        assert await store.delete_user("0" * 32, T0 + 1, audit=[event]) is None
        assert [e.kind for e in await store.list_audit()] == [AuditKind.SESSIONS_REVOKED]

    # --- the audit trail ------------------------------------------------------------------

    async def test_audit_roundtrip_newest_first(self, store: Store) -> None:
        """Every field reads back; newest first, the later insert first for equal times."""
        full = audit_event(
            AuditKind.REUSE_DETECTED,
            at=T0 + 1.25,
            user_id="a" * 32,
            username="Ålice",
            sid="1" * 32,
            address="2001:db8::7",
            user_agent="Mozilla/5.0 — naïve",
            reason="generation 1 of 3",
        )
        bare = audit_event(AuditKind.LOGIN_FAILED, at=T0)
        tie = audit_event(AuditKind.LOGIN_FAILED, at=T0, reason="unknown_user")
        await store.add_audit([bare])
        await store.add_audit([full, tie])
        events = await store.list_audit()
        assert without_ids(events) == [full, tie, bare]
        assert events[1].id is not None and events[2].id is not None
        assert events[1].id > events[2].id
        await store.add_audit([])
        assert len(await store.list_audit()) == 3

    async def test_audit_filters_and_limit(self, store: Store) -> None:
        """list_audit filters by user, by time (inclusive) and by kind, and stops at limit."""
        alice, bob = "a" * 32, "b" * 32
        events = [
            audit_event(AuditKind.LOGIN_OK, at=T0 + 1, user_id=alice),
            audit_event(AuditKind.LOGIN_OK, at=T0 + 2, user_id=bob),
            audit_event(AuditKind.REFRESH, at=T0 + 3, user_id=alice),
            audit_event(AuditKind.LOGIN_FAILED, at=T0 + 4),
            audit_event(AuditKind.SESSION_REVOKED, at=T0 + 5, user_id=alice),
        ]
        await store.add_audit(events)
        newest_first = events[::-1]
        assert without_ids(await store.list_audit()) == newest_first
        assert without_ids(await store.list_audit(user_id=alice)) == [
            events[4],
            events[2],
            events[0],
        ]
        assert without_ids(await store.list_audit(since=T0 + 3)) == newest_first[:3]
        assert without_ids(await store.list_audit(user_id=alice, since=T0 + 2)) == [
            events[4],
            events[2],
        ]
        assert without_ids(await store.list_audit(kind=AuditKind.LOGIN_OK)) == [
            events[1],
            events[0],
        ]
        assert without_ids(await store.list_audit(limit=2)) == newest_first[:2]
        assert without_ids(await store.list_audit(user_id=alice, limit=1)) == [events[4]]
        assert await store.list_audit(user_id="c" * 32) == []
        assert await store.list_audit(since=T0 + 6) == []

    # --- purge ----------------------------------------------------------------------------

    async def test_purge_removes_only_dead_rows(self, store: Store) -> None:
        """Sessions revoked or expired before the cutoff go, and audit events older than
        theirs; live sessions, recently ended ones and recent events stay."""
        cutoff, audit_cutoff = T0, T0 - DAY
        keep = [
            make_session(1),  # live
            make_session(2, revoked_at=T0 + 1, revoked_reason="logout"),  # revoked after
            make_session(3, revoked_at=T0, revoked_reason="logout"),  # revoked at the cutoff
            make_session(4, idle_expires_at=T0 + 1),  # expires after
            make_session(5, idle_expires_at=T0, absolute_expires_at=T0 + 5),  # at the cutoff
        ]
        dead = [
            make_session(6, revoked_at=T0 - 1, revoked_reason="logout"),
            make_session(7, idle_expires_at=T0 - 1),
            make_session(8, absolute_expires_at=T0 - 1, idle_expires_at=T0 + DAY),
        ]
        for session in (*keep, *dead):
            await add_session(store, session)
        recent = [audit_event(AuditKind.LOGIN_OK, at=at) for at in (audit_cutoff, T0)]
        old = [audit_event(AuditKind.LOGIN_OK, at=audit_cutoff - 1, reason="old")]
        await store.add_audit([*old, *recent])
        assert await store.purge(sessions_before=cutoff, audit_before=audit_cutoff, batch=100) == 4
        assert sorted(s.sid for s in await store.list_sessions(None)) == sorted(s.sid for s in keep)
        for session in keep:
            assert await store.get_session(session.sid) == session
        assert without_ids(await store.list_audit()) == recent[::-1]
        assert await store.purge(sessions_before=cutoff, audit_before=audit_cutoff, batch=100) == 0

    async def test_purge_in_batches_drains(self, store: Store) -> None:
        """Each call deletes at most ``batch`` rows of each table; repeated calls drain them."""
        live = [make_session(seed) for seed in range(1, 4)]
        dead = [
            make_session(seed, revoked_at=T0 - seed, revoked_reason="logout")
            for seed in range(10, 17)
        ]
        for session in (*live, *dead):
            await add_session(store, session)
        await store.add_audit(
            [audit_event(AuditKind.REFRESH, at=T0 - DAY - i) for i in range(1, 5)]
        )
        recent = audit_event(AuditKind.LOGIN_OK, at=T0)
        await store.add_audit([recent])

        async def purge() -> int:
            return await store.purge(sessions_before=T0, audit_before=T0 - DAY, batch=3)

        async def counts() -> tuple[int, int]:
            return len(await store.list_sessions(None)), len(await store.list_audit())

        assert await counts() == (10, 5)
        assert await purge() == 3 + 3
        assert await counts() == (7, 2)
        assert await purge() == 3 + 1
        assert await counts() == (4, 1)
        assert await purge() == 1
        assert await counts() == (3, 1)
        assert await purge() == 0
        assert await store.list_sessions(None, live_at=T0) == sorted(live, key=lambda s: s.sid)
        assert without_ids(await store.list_audit()) == [recent]

    # --- registered clients (introspection) ----------------------------------------------

    async def test_client_roundtrip(self, store: Store) -> None:
        """A client added reads back field for field, its secret hash as bytes."""
        client = make_client(1, name="billing — naïve API")
        await store.add_client(client)
        got = await store.client_by_id(client.id)
        assert got == client
        assert got is not None
        assert type(got.secret_hash) is bytes

    async def test_unknown_client_is_none(self, store: Store) -> None:
        """client_by_id of an id never added returns None."""
        await store.add_client(make_client(1))
        assert await store.client_by_id(make_client(2).id) is None

    async def test_duplicate_client_id_conflicts(self, store: Store) -> None:
        """A second client with the same id raises Conflict and changes nothing."""
        first = make_client(1)
        await store.add_client(first)
        with pytest.raises(Conflict):
            await store.add_client(make_client(1, name="impostor"))
        assert await store.list_clients() == [first]

    async def test_list_clients_oldest_first(self, store: Store) -> None:
        """list_clients returns every client, oldest first; none in a fresh store."""
        assert await store.list_clients() == []
        clients = [make_client(seed, created_at=T0 - seed) for seed in (1, 3, 2)]
        for client in clients:
            await store.add_client(client)
        assert await store.list_clients() == sorted(clients, key=lambda c: c.created_at)

    async def test_remove_client(self, store: Store, second_store: Store) -> None:
        """remove_client deletes one client (seen by every instance) and writes its audit
        events; removing it again is False and writes none."""
        gone, kept = make_client(1), make_client(2)
        added = audit_event(AuditKind.CLIENT_ADDED, reason=f"client {gone.id}")
        await store.add_client(gone, audit=[added])
        await store.add_client(kept)
        removed = audit_event(AuditKind.CLIENT_REMOVED, at=T0 + 1, reason=f"client {gone.id}")
        assert await store.remove_client(gone.id, audit=[removed]) is True
        assert await second_store.client_by_id(gone.id) is None
        assert await second_store.list_clients() == [kept]
        assert await store.remove_client(gone.id, audit=[removed]) is False
        assert without_ids(await store.list_audit()) == [removed, added]


def make_client(seed: int, **fields: object) -> Client:
    values: dict[str, object] = {
        "id": f"{seed:032x}",
        "name": f"client-{seed}",
        "secret_hash": fill(seed, 32),
        "created_at": T0,
        **fields,
    }
    return Client(**values)  # type: ignore[arg-type]


def make_stored_key(kid: str, **fields: object) -> StoredKey:
    values: dict[str, object] = {
        "kid": kid,
        "alg": "RS256",
        "sealed_private_key": hashlib.sha256(kid.encode()).digest() * 3,
        "created_at": T0,
        "activates_at": T0,
        "retired_at": None,
        **fields,
    }
    return StoredKey(**values)  # type: ignore[arg-type]
