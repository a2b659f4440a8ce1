"""The contract every store adapter passes (DESIGN §1: one protocol, one shared suite).

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
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from latchkey.core.errors import Conflict
from latchkey.core.keyring import StoredKey
from latchkey.core.sessions import Rotation, Session
from latchkey.core.users import User
from latchkey.store import Store

OpenStore = Callable[[], Awaitable[Store]]

T0 = 1_800_000_000.0
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
        **fields,
    }
    return Rotation(**values)  # type: ignore[arg-type]


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
        )
        for session in (full, fresh):
            await store.add_session(session)
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
        await store.add_session(session)
        rotation = rotation_of(session, now=T0 + 60)
        row = await store.rotate(rotation)
        expected = dataclasses.replace(
            session,
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

    async def test_rotate_twice_with_same_expectation_fails(self, store: Store) -> None:
        """The second rotation with the same expectation matches nothing (compare-and-swap)."""
        session = make_session()
        await store.add_session(session)
        first = await store.rotate(rotation_of(session, seed=1))
        assert first is not None
        assert await store.rotate(rotation_of(session, seed=2)) is None
        assert await store.get_session(session.sid) == first

    async def test_rotate_with_wrong_hash_fails(self, store: Store) -> None:
        """A rotation whose expected hash is not the current one leaves the row unchanged."""
        session = make_session()
        await store.add_session(session)
        assert await store.rotate(rotation_of(session, expected_hash=b"\x01" * 32)) is None
        assert await store.rotate(rotation_of(session, expected_hash=session.previous_hash)) is None
        assert await store.get_session(session.sid) == session

    async def test_rotate_with_wrong_generation_fails(self, store: Store) -> None:
        """A rotation whose expected generation is not the current one matches nothing."""
        session = make_session()
        await store.add_session(session)
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
        await store.add_session(session)
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
        await store.add_session(session)
        assert await store.rotate(rotation_of(session, now=T0 + 100 + late)) is None
        assert await store.get_session(session.sid) == session

    @pytest.mark.parametrize("late", [0.0, 0.5, DAY])
    async def test_rotate_of_absolute_expired_session_fails(
        self, store: Store, late: float
    ) -> None:
        """At or past the absolute expiry the rotation matches nothing, whatever the idle one."""
        session = make_session(idle_expires_at=T0 + 30 * DAY, absolute_expires_at=T0 + 100)
        await store.add_session(session)
        assert await store.rotate(rotation_of(session, now=T0 + 100 + late)) is None
        assert await store.get_session(session.sid) == session

    async def test_rotate_just_before_expiry_succeeds(self, store: Store) -> None:
        """A rotation an instant before both expiries still applies."""
        session = make_session(idle_expires_at=T0 + 100, absolute_expires_at=T0 + 200)
        await store.add_session(session)
        assert await store.rotate(rotation_of(session, now=T0 + 99.5)) is not None

    async def test_revoke_session(self, store: Store) -> None:
        """revoke_session is True once, then False; it records when and why."""
        session = make_session()
        await store.add_session(session)
        assert await store.revoke_session(session.sid, "reuse_detected", T0 + 1.5) is True
        assert await store.revoke_session(session.sid, "logout", T0 + 9) is False
        got = await store.get_session(session.sid)
        assert got == dataclasses.replace(
            session, revoked_at=T0 + 1.5, revoked_reason="reuse_detected"
        )

    async def test_revoke_unknown_session(self, store: Store) -> None:
        """Revoking a sid that does not exist returns False."""
        assert await store.revoke_session("e" * 32, "logout", T0) is False

    async def test_revoke_touches_only_that_session(self, store: Store) -> None:
        """Revoking one session leaves another of the same user live."""
        one, two = make_session(1), make_session(2)
        await store.add_session(one)
        await store.add_session(two)
        await store.revoke_session(one.sid, "logout", T0)
        assert await store.get_session(two.sid) == two

    async def test_ping(self, store: Store) -> None:
        """ping succeeds on a reachable store."""
        await store.ping()

    # --- atomicity (DESIGN §2) -----------------------------------------------------------

    async def test_concurrent_rotations_one_winner(self, store: Store) -> None:
        """Of 20 concurrent rotations with one expectation, exactly one applies."""
        session = make_session()
        await store.add_session(session)
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
        await store.add_session(session)
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
