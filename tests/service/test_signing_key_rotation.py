"""Signing-key rotation through Container, on SQLite and PostgreSQL (docs/keys.md).

A new key is published at once and signs LATCHKEY_KEY_PREPUBLISH later; the key it replaces
keeps verifying until every token it signed has expired, then leaves the JWKS and the
verifier. States follow the clock: no write is needed when a key changes state.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from latchkey.bootstrap import Container, build
from latchkey.core.audit import AuditKind
from latchkey.core.b64 import b64url_decode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import ForbiddenHeader
from latchkey.core.keyring import KeyState, KeyStatus
from latchkey.services import ClientInfo, TokenPair
from latchkey.settings import Settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")
DAY = 86_400
TTL = 900  # LATCHKEY_ACCESS_TTL default
PREPUBLISH = 600  # LATCHKEY_KEY_PREPUBLISH default
PROPAGATION = 10  # twice LATCHKEY_KEY_REFRESH_INTERVAL (5 s)


def settings_like(base: Settings, **overrides: Any) -> Settings:
    """Settings as ``base`` (same database and data dir) with some values changed."""
    values: dict[str, Any] = {**base.model_dump(), **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def open_instance(settings: Settings, clock: ManualClock) -> Container:
    """Another server instance on the same database, with the same clock."""
    instance = build(settings, clock=clock)
    await instance.migrate()
    return instance


def kid_of(token: str) -> str:
    kid: str = json.loads(b64url_decode(token.split(".")[0]))["kid"]
    return kid


def published(services: Container) -> list[str]:
    return [key["kid"] for key in services.keys.jwks()["keys"]]


def status_of(services: Container, kid: str) -> KeyStatus:
    return next(status for status in services.keys.ring.status() if status.key.kid == kid)


@pytest.fixture
async def pair(services: Container, clock: ManualClock) -> TokenPair:
    """Alice's session, a second after the first key was made (keys made in one instant are
    ordered by kid, which a test cannot choose)."""
    await services.accounts.add_user("alice", PASSWORD)
    tokens = await services.tokens.login("alice", PASSWORD, CLIENT)
    clock.advance(1)
    return tokens


@pytest.fixture
async def other(settings: Settings, clock: ManualClock) -> AsyncIterator[Container]:
    """A second instance sharing the ``service`` fixture's database."""
    instance = await open_instance(settings, clock)
    yield instance
    await instance.close()


async def test_new_key_is_published_at_once_and_signs_after_prepublication(
    services: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """Rotation: the new kid is in the JWKS immediately; the old key signs until the new
    key's activates_at, then the new key signs — without any reload in between."""
    old = kid_of(pair.access_token)
    new = await services.keys.rotate()
    assert new != old
    assert published(services) == [old, new]
    assert status_of(services, new).state is KeyState.PENDING

    clock.advance(PREPUBLISH - 1)
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert kid_of(pair.access_token) == old
    clock.advance(1)
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert kid_of(pair.access_token) == new  # the ring followed the clock
    await services.keys.load()  # a reload agrees
    assert services.keys.ring.signing.kid == new
    assert [s.state for s in services.keys.ring.status()] == [KeyState.RETIRING, KeyState.SIGNING]
    assert services.keys.ring.signing.alg == "RS256"


async def test_old_key_verifies_until_its_tokens_expire_then_is_dropped(
    services: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """A token the old key signed just before the switch verifies until it expires (retire +
    ACCESS_TTL); at that moment the key leaves the JWKS and its tokens fail as unknown kid."""
    old = kid_of(pair.access_token)
    new = await services.keys.rotate()
    activation = clock.now() + PREPUBLISH
    clock.set(activation - 1)
    last_of_old = (await services.tokens.refresh(pair.refresh_token, CLIENT)).access_token
    assert kid_of(last_of_old) == old
    clock.set(activation)
    retiring = status_of(services, old)
    assert retiring.state is KeyState.RETIRING
    assert retiring.retires_at == activation
    assert retiring.dropped_after == activation + TTL

    clock.set(activation + TTL - 2)
    await services.keys.load()
    assert services.tokens.verify_access_token(last_of_old)["sub"]
    assert published(services) == [old, new]

    clock.set(activation + TTL)
    await services.keys.load()
    assert published(services) == [new]
    assert status_of(services, old).state is KeyState.DROPPED
    with pytest.raises(ForbiddenHeader):  # the kid is unknown now (checked before exp)
        services.tokens.verify_access_token(last_of_old)


async def test_instances_agree_after_reload(
    services: Container, other: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """A key rotated on one instance is published by another after its reload; both switch
    at the same moment and accept each other's tokens throughout."""
    old = kid_of(pair.access_token)
    assert published(other) == [old]
    new = await services.keys.rotate()
    await other.keys.load()
    assert other.keys.jwks() == services.keys.jwks()
    states = [(s.key.kid, s.state, s.retires_at, s.dropped_after) for s in other.keys.ring.status()]
    assert states == [
        (s.key.kid, s.state, s.retires_at, s.dropped_after) for s in services.keys.ring.status()
    ]

    for step in (PREPUBLISH - 1, 1, TTL - 1):
        clock.advance(step)
        assert other.keys.ring.signing.kid == services.keys.ring.signing.kid
        pair = await other.tokens.refresh(pair.refresh_token, CLIENT)
        assert services.tokens.verify_access_token(pair.access_token)["sid"]
    assert services.keys.ring.signing.kid == new
    clock.advance(1)
    assert published(other) == published(services) == [new]


async def test_automatic_rotation_happens_once_with_two_instances(
    services: Container, settings: Settings, clock: ManualClock
) -> None:
    """LATCHKEY_KEY_ROTATION_INTERVAL: when the newest key is that old, instances racing to
    rotate add exactly one key, and none until the interval has passed again."""
    interval = 90 * DAY
    scheduled = settings_like(settings, key_rotation_interval=interval)
    first = await open_instance(scheduled, clock)
    second = await open_instance(scheduled, clock)
    try:
        assert await first.keys.rotate_if_due() is None
        clock.advance(interval)
        results = await asyncio.gather(*(i.keys.rotate_if_due() for i in (first, second) * 3))
        added = [kid for kid in results if kid is not None]
        assert len(added) == 1
        for instance in (first, second, services):
            await instance.keys.load()
            assert published(instance)[-1] == added[0]
            assert status_of(instance, added[0]).state is KeyState.PENDING
        assert await second.keys.rotate_if_due() is None
        events = await services.store.list_audit(kind=AuditKind.KEY_ROTATED)
        assert [event.reason for event in events] == [f"automatic: {added[0]}"]
        clock.advance(PREPUBLISH)
        assert first.keys.ring.signing.kid == second.keys.ring.signing.kid == added[0]
    finally:
        await first.close()
        await second.close()


async def test_rotation_uses_the_configured_algorithm(
    services: Container, settings: Settings, clock: ManualClock
) -> None:
    """The new key has LATCHKEY_SIGNING_ALG, whatever the algorithm of the key it replaces."""
    clock.advance(1)
    instance = await open_instance(settings_like(settings, signing_alg="ES256"), clock)
    try:
        new = await instance.keys.rotate(immediately=True)
        assert status_of(instance, new).key.alg == "ES256"
        assert instance.keys.ring.signing.alg == "ES256"
        await services.keys.load()
        assert [key["alg"] for key in services.keys.jwks()["keys"]] == ["RS256", "ES256"]
    finally:
        await instance.close()


async def test_never_without_a_signing_key(
    services: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """Through several rotations, scheduled and immediate, exactly one key signs at every
    step and it is published; dropped keys' rows go a day later, the signing key's never."""
    for round_ in range(4):
        await services.keys.rotate(immediately=round_ % 2 == 1)
        for _ in range(12):
            clock.advance(137)
            if round_ % 2:
                await services.keys.load()
            signing = [s for s in services.keys.ring.status() if s.state is KeyState.SIGNING]
            assert len(signing) == 1
            assert signing[0].key.kid == services.keys.ring.signing.kid
            assert services.keys.ring.signing.kid in published(services)
            pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
            assert services.tokens.verify_access_token(pair.access_token)["sid"]
    assert len(await services.store.list_signing_keys()) == 5

    clock.advance(2 * DAY)
    await services.keys.load()
    rows = await services.store.list_signing_keys()
    assert [row.kid for row in rows] == [services.keys.ring.signing.kid] == published(services)

    clock.advance(365 * DAY)  # however old, the only key keeps signing
    await services.keys.load()
    assert [s.state for s in services.keys.ring.status()] == [KeyState.SIGNING]
    assert len(await services.store.list_signing_keys()) == 1


async def test_immediate_rotation_signs_now_and_keeps_the_old_key_verifying(
    services: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """``--immediately``: the new key signs at once; the old key keeps verifying its tokens,
    one reload period longer (an instance may still sign with it until it reloads)."""
    old = kid_of(pair.access_token)
    now = clock.now()
    new = await services.keys.rotate(immediately=True)
    assert kid_of((await services.tokens.refresh(pair.refresh_token, CLIENT)).access_token) == new
    retiring = status_of(services, old)
    assert retiring.state is KeyState.RETIRING
    assert retiring.dropped_after == now + PROPAGATION + TTL
    assert services.tokens.verify_access_token(pair.access_token)["sid"]


async def test_drop_previous_withdraws_the_old_key_everywhere_at_once(
    services: Container, other: Container, pair: TokenPair
) -> None:
    """After a compromise: the new key signs now; the old ones (the signing key and a
    pending one) are withdrawn and their tokens fail at once, on every instance after its
    reload; the audit trail records each step."""
    old = kid_of(pair.access_token)
    pending = await services.keys.rotate()
    new = await services.keys.rotate(immediately=True, drop_previous=True)
    await other.keys.load(create=True)  # a restart creates no further key
    for instance in (services, other):
        assert published(instance) == [new]
        assert instance.keys.ring.signing.kid == new
        for kid in (old, pending):
            assert status_of(instance, kid).state is KeyState.WITHDRAWN
        with pytest.raises(ForbiddenHeader):
            instance.tokens.verify_access_token(pair.access_token)
    events = await services.store.list_audit(kind=AuditKind.KEY_ROTATED)
    assert {event.reason for event in events} == {
        f"scheduled: {pending}",
        f"immediate: {new}",
        f"withdrawn: {old}",
        f"withdrawn: {pending}",
    }


async def test_a_newer_rotation_supersedes_a_pending_key(
    services: Container, clock: ManualClock, pair: TokenPair
) -> None:
    """A scheduled rotation followed by an immediate one: the newest key signs, also once
    the older pending key's activation time has come."""
    pending = await services.keys.rotate()
    clock.advance(30)
    newest = await services.keys.rotate(immediately=True)
    clock.advance(PREPUBLISH)
    await services.keys.load()
    assert services.keys.ring.signing.kid == newest
    assert status_of(services, pending).state is KeyState.RETIRING


async def test_reloading_opens_keys_off_the_event_loop(
    services: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic reload unseals and parses keys in the hashing pool, never on the thread
    that runs the event loop (which keeps answering requests meanwhile)."""
    ring = services.keys.ring
    threads: list[str] = []
    prepare = ring.prepare

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return prepare(*args)

    monkeypatch.setattr(ring, "prepare", recording)
    await services.keys.load()
    assert threads and all(name.startswith("latchkey-hash") for name in threads)
    assert threading.current_thread().name not in threads
