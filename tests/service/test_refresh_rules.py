"""The session and refresh-token rules of docs/design.md §2, through Container on SQLite."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from latchkey.bootstrap import Container, build
from latchkey.core.b64 import b64url_decode, b64url_encode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import (
    InvalidCredentials,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshTokenSuperseded,
    SessionRevoked,
)
from latchkey.core.refresh import RefreshToken, RefreshTokenCodec
from latchkey.core.sessions import Session
from latchkey.services import ClientInfo, TokenPair
from latchkey.settings import Settings
from latchkey.store.sql import SqlStore
from latchkey.store.tables import sessions

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")
DAY = 86_400

ServiceFactory = Callable[..., AbstractAsyncContextManager[Container]]


# --- helpers ---------------------------------------------------------------------------------


def settings_like(base: Settings, **overrides: Any) -> Settings:
    """Settings as ``base`` (database, data dir, cheap Argon2) with some values changed."""
    values: dict[str, Any] = {**base.model_dump(), **overrides}
    if base.is_sqlite and "data_dir" in overrides:
        del values["database_url"]  # a new data dir holds its own SQLite file
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def another_service(settings: Settings, clock: ManualClock) -> ServiceFactory:
    """Opens a further service (same clock) with settings derived from the default ones."""

    @asynccontextmanager
    async def open_(**overrides: Any) -> AsyncIterator[Container]:
        svc = build(settings_like(settings, **overrides), clock=clock)
        await svc.migrate()
        try:
            yield svc
        finally:
            await svc.close()

    return open_


def parse(token: str) -> RefreshToken:
    """The fields of a refresh token, read from its documented wire form (no MAC check)."""
    assert token.startswith("lkrt.")
    raw = b64url_decode(token[len("lkrt.") :])
    assert len(raw) == 16 + 8 + 32 + 16
    return RefreshToken(raw[:16].hex(), int.from_bytes(raw[16:24], "big"), raw[24:56])


def tamper(token: str, index: int) -> str:
    """The token with the base64url character at ``index`` (in the body) replaced."""
    position = len("lkrt.") + index
    old = token[position]
    new = "B" if old != "B" else "C"
    return token[:position] + new + token[position + 1 :]


def store_of(services: Container) -> SqlStore:
    store = services.store
    assert isinstance(store, SqlStore)
    return store


async def session_of(services: Container, token: str) -> Session:
    session = await services.store.get_session(parse(token).sid)
    assert session is not None
    return session


async def count_sessions(services: Container, sid: str | None = None) -> int:
    statement = select(func.count()).select_from(sessions)
    if sid is not None:
        statement = statement.where(sessions.c.sid == sid)
    async with store_of(services).engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def login(services: Container, username: str = "alice") -> TokenPair:
    return await services.tokens.login(username, PASSWORD, CLIENT)


@pytest.fixture
async def alice(services: Container) -> str:
    """The id of a user 'alice' with the password PASSWORD."""
    user = await services.accounts.add_user("alice", PASSWORD, scope="read write")
    return user.id


# --- login -----------------------------------------------------------------------------------


async def test_login_returns_a_pair(services: Container, alice: str, settings: Settings) -> None:
    """Login returns a valid access token and a generation-0 refresh token of a new session."""
    pair = await login(services)
    assert pair.token_type == "Bearer"
    assert pair.expires_in == settings.access_ttl
    assert pair.refresh_expires_in == settings.refresh_ttl
    claims = services.tokens.verify_access_token(pair.access_token)
    assert claims["sub"] == alice
    assert claims["scope"] == "read write"
    token = parse(pair.refresh_token)
    assert token.generation == 0
    assert claims["sid"] == token.sid
    session = await session_of(services, pair.refresh_token)
    assert session.user_id == alice
    assert session.generation == 0
    assert session.current_hash == token.digest
    assert session.user_agent == "pytest"
    assert session.address == "192.0.2.7"


async def test_each_login_is_a_new_session(services: Container, alice: str) -> None:
    """Two logins of one user start two sessions."""
    one, two = await login(services), await login(services)
    assert parse(one.refresh_token).sid != parse(two.refresh_token).sid
    assert await count_sessions(services) == 2


async def test_unknown_user_and_wrong_password_look_the_same(
    services: Container, alice: str
) -> None:
    """An unknown user and a wrong password raise the same InvalidCredentials, same text."""
    with pytest.raises(InvalidCredentials) as unknown:
        await services.tokens.login("mallory", PASSWORD, CLIENT)
    with pytest.raises(InvalidCredentials) as wrong:
        await services.tokens.login("alice", PASSWORD + "!", CLIENT)
    assert type(unknown.value) is type(wrong.value) is InvalidCredentials
    assert unknown.value.description == wrong.value.description
    assert str(unknown.value) == str(wrong.value)
    assert (unknown.value.error, unknown.value.status_code) == ("invalid_grant", 401)
    assert (wrong.value.error, wrong.value.status_code) == ("invalid_grant", 401)
    assert await count_sessions(services) == 0


async def test_password_rehashed_when_parameters_change(
    services: Container, alice: str, another_service: ServiceFactory, settings: Settings
) -> None:
    """After the Argon2 parameters change, a successful login stores a hash made with them."""
    before = await services.store.user_by_id(alice)
    assert before is not None
    assert f"t={settings.argon2_time_cost}," in before.password_hash
    async with another_service(argon2_time_cost=settings.argon2_time_cost + 1) as stronger:
        await stronger.tokens.login("alice", PASSWORD, CLIENT)
        after = await stronger.store.user_by_id(alice)
        assert after is not None
        assert after.password_hash != before.password_hash
        assert f"t={settings.argon2_time_cost + 1}," in after.password_hash
        # The new hash verifies, and a second login does not rehash again.
        await stronger.tokens.login("alice", PASSWORD, CLIENT)
        again = await stronger.store.user_by_id(alice)
        assert again is not None
        assert again.password_hash == after.password_hash


async def test_wrong_password_does_not_rehash(
    services: Container, alice: str, another_service: ServiceFactory, settings: Settings
) -> None:
    """A failed login under new parameters leaves the stored hash alone."""
    before = await services.store.user_by_id(alice)
    async with another_service(argon2_time_cost=settings.argon2_time_cost + 1) as stronger:
        with pytest.raises(InvalidCredentials):
            await stronger.tokens.login("alice", "wrong", CLIENT)
        assert await stronger.store.user_by_id(alice) == before


@pytest.mark.parametrize(
    "username",
    [
        "ALICE",
        "Alice",
        "  alice ",
        "\uff41\uff4c\uff49\uff43\uff45",
        "\uff21\uff2c\uff29\uff23\uff25",
    ],
)
async def test_username_is_case_insensitive_and_nfkc(
    services: Container, alice: str, username: str
) -> None:
    """Another case or the NFKC-equivalent (fullwidth) spelling logs in as the same user."""
    pair = await services.tokens.login(username, PASSWORD, CLIENT)
    assert services.tokens.verify_access_token(pair.access_token)["sub"] == alice


async def test_long_password(services: Container) -> None:
    """A 1,024-character password works in full: a prefix of it is refused."""
    password = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(1024))
    await services.accounts.add_user("bob", password)
    pair = await services.tokens.login("bob", password, CLIENT)
    assert pair.refresh_token
    with pytest.raises(InvalidCredentials):
        await services.tokens.login("bob", password[:-1], CLIENT)
    with pytest.raises(InvalidCredentials):
        await services.tokens.login("bob", password[:72], CLIENT)


# --- rotation --------------------------------------------------------------------------------


async def test_refresh_rotates(services: Container, alice: str, clock: ManualClock) -> None:
    """A refresh issues a new refresh token one generation on; the old one is not current."""
    first = await login(services)
    clock.advance(30)
    second = await services.tokens.refresh(first.refresh_token)
    old, new = parse(first.refresh_token), parse(second.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert new.sid == old.sid
    assert new.generation == old.generation + 1
    session = await session_of(services, second.refresh_token)
    assert session.generation == 1
    assert session.current_hash == new.digest != old.digest
    assert session.previous_hash == old.digest
    assert session.last_used_at == clock.now()
    claims = services.tokens.verify_access_token(second.access_token)
    assert (claims["sid"], claims["sub"]) == (old.sid, alice)
    # The new token is the current one: it rotates again.
    third = await services.tokens.refresh(second.refresh_token)
    assert parse(third.refresh_token).generation == 2


@pytest.mark.parametrize("delay", [0, 5, 9])
async def test_grace_window_returns_same_successor(
    services: Container, alice: str, clock: ManualClock, delay: int
) -> None:
    """The previous token re-sent within 10 s gets the very same successor and a valid access."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(delay)
    retry = await services.tokens.refresh(first.refresh_token)
    assert retry.refresh_token == second.refresh_token
    claims = services.tokens.verify_access_token(retry.access_token)
    assert claims["sid"] == parse(first.refresh_token).sid
    session = await session_of(services, second.refresh_token)
    assert session.generation == 1
    assert session.revoked_at is None
    # The successor is still the one current token.
    third = await services.tokens.refresh(second.refresh_token)
    assert parse(third.refresh_token).generation == 2


async def test_grace_replay_does_not_overstate_lifetime(
    services: Container, alice: str, clock: ManualClock, settings: Settings
) -> None:
    """A grace replay reports no more lifetime than the successor really has left."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(9)
    retry = await services.tokens.refresh(first.refresh_token)
    session = await session_of(services, second.refresh_token)
    assert retry.refresh_expires_in <= session.expires_at() - clock.now()
    assert retry.refresh_expires_in == second.refresh_expires_in - 9


async def test_concurrent_refreshes_do_not_fork(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """20 concurrent refreshes of one token all get one successor; the chain advances by 1."""
    first = await login(services)
    sid = parse(first.refresh_token).sid
    pairs = await asyncio.gather(*(services.tokens.refresh(first.refresh_token) for _ in range(20)))
    successors = {pair.refresh_token for pair in pairs}
    assert len(successors) == 1
    (successor,) = successors
    for pair in pairs:
        assert services.tokens.verify_access_token(pair.access_token)["sid"] == sid
    session = await session_of(services, successor)
    assert session.generation == 1
    assert session.current_hash == parse(successor).digest
    assert await count_sessions(services) == 1
    # The successor rotates once; a retry of it within the window gets the same next token.
    nxt = await services.tokens.refresh(successor)
    assert parse(nxt.refresh_token).generation == 2
    assert (await services.tokens.refresh(successor)).refresh_token == nxt.refresh_token
    assert (await session_of(services, successor)).generation == 2
    assert await count_sessions(services) == 1
    # Outside the window, the successor is an old token like any other.
    clock.advance(11)
    with pytest.raises(RefreshTokenReused):
        await services.tokens.refresh(successor)


async def test_concurrent_refreshes_across_instances_do_not_fork(
    services: Container, alice: str, another_service: ServiceFactory
) -> None:
    """Concurrent refreshes of one token on two service instances get one successor."""
    first = await login(services)
    async with another_service() as other:
        instances = (services, other)
        pairs = await asyncio.gather(
            *(instances[i % 2].tokens.refresh(first.refresh_token) for i in range(20))
        )
        assert len({pair.refresh_token for pair in pairs}) == 1
        assert (await session_of(other, pairs[0].refresh_token)).generation == 1


async def test_concurrent_refreshes_without_grace_have_one_winner(
    another_service: ServiceFactory, tmp_path: Path
) -> None:
    """With the grace window off, of 20 concurrent refreshes exactly one succeeds."""
    async with another_service(data_dir=tmp_path / "nograce", refresh_grace=0) as svc:
        await svc.accounts.add_user("alice", PASSWORD)
        first = await login(svc)
        results = await asyncio.gather(
            *(svc.tokens.refresh(first.refresh_token) for _ in range(20)), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, TokenPair)]
        assert len(winners) == 1
        for result in results:
            assert isinstance(result, TokenPair | SessionRevoked), result
        assert (await session_of(svc, first.refresh_token)).generation == 1


async def test_replay_after_grace_revokes_the_session(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """The previous token after the window is reuse: 401, and the newest token dies too."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(11)
    with pytest.raises(RefreshTokenReused):
        await services.tokens.refresh(first.refresh_token)
    with pytest.raises(SessionRevoked) as newest:
        await services.tokens.refresh(second.refresh_token)
    assert type(newest.value) is SessionRevoked
    session = await session_of(services, first.refresh_token)
    assert session.revoked_reason == "reuse_detected"
    assert session.revoked_at == clock.now()
    # Neither token ever comes back.
    for token in (first.refresh_token, second.refresh_token):
        with pytest.raises(SessionRevoked):
            await services.tokens.refresh(token)


async def test_replay_without_grace_revokes_immediately(
    another_service: ServiceFactory, tmp_path: Path
) -> None:
    """With refresh_grace=0 an immediate replay of the previous token revokes the session."""
    async with another_service(data_dir=tmp_path / "nograce", refresh_grace=0) as svc:
        await svc.accounts.add_user("alice", PASSWORD)
        first = await login(svc)
        second = await svc.tokens.refresh(first.refresh_token)
        with pytest.raises(RefreshTokenReused):
            await svc.tokens.refresh(first.refresh_token)
        with pytest.raises(SessionRevoked):
            await svc.tokens.refresh(second.refresh_token)


async def test_straggler_within_the_window_is_refused_without_revoking(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """T0 is retried (T0 → T1), T1 rotates to T2, then the first T0 arrives, inside the
    window: it is refused, and the session, its newest token and its access token live on."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)  # the retry
    clock.advance(1)
    third = await services.tokens.refresh(second.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenSuperseded):
        await services.tokens.refresh(first.refresh_token)  # the straggler
    session = await session_of(services, first.refresh_token)
    assert session.revoked_at is None
    services.tokens.verify_access_token(third.access_token)  # not on the deny-list
    kinds = [event.kind.value for event in await services.store.list_audit()]
    assert "reuse_detected" not in kinds and "session_revoked" not in kinds
    fourth = await services.tokens.refresh(third.refresh_token)
    assert parse(fourth.refresh_token).generation == 3


async def test_older_generation_after_the_window_revokes(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """Generation n-2, once it stopped being current more than the window ago, is reuse."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(11)
    third = await services.tokens.refresh(second.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        await services.tokens.refresh(first.refresh_token)
    with pytest.raises(SessionRevoked):
        await services.tokens.refresh(third.refresh_token)
    with pytest.raises(SessionRevoked):
        await services.tokens.refresh(second.refresh_token)


async def test_straggler_is_reuse_once_the_window_has_passed(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """The same straggler as above, arriving two windows late, revokes the session."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(1)
    await services.tokens.refresh(second.refresh_token)
    clock.advance(2 * 10 + 1)
    with pytest.raises(RefreshTokenReused):
        await services.tokens.refresh(first.refresh_token)
    assert (await session_of(services, first.refresh_token)).revoked_reason == "reuse_detected"


# --- forgery ---------------------------------------------------------------------------------


async def assert_untouched(services: Container, pair: TokenPair) -> None:
    """The session of ``pair`` is as login left it, and its token still rotates."""
    session = await session_of(services, pair.refresh_token)
    assert session.revoked_at is None
    assert session.generation == parse(pair.refresh_token).generation
    assert parse((await services.tokens.refresh(pair.refresh_token)).refresh_token).generation == (
        session.generation + 1
    )


@pytest.mark.parametrize("index", [0, 20, 40, 60, 80, 95])
async def test_tampered_token_is_invalid_without_side_effect(
    services: Container, alice: str, index: int
) -> None:
    """A valid token with one character changed is rejected and harms nothing."""
    pair = await login(services)
    with pytest.raises(RefreshTokenInvalid):
        await services.tokens.refresh(tamper(pair.refresh_token, index))
    await assert_untouched(services, pair)


@pytest.mark.parametrize("generation", [0, 1, 5])
async def test_token_from_another_secret_is_invalid_without_side_effect(
    services: Container, alice: str, generation: int
) -> None:
    """A well-formed token for a real sid minted under another secret is rejected harmlessly."""
    pair = await login(services)
    sid = parse(pair.refresh_token).sid
    foreign = RefreshTokenCodec(secrets.token_bytes(32))
    forged = foreign.encode(RefreshToken(sid, generation, secrets.token_bytes(32)))
    with pytest.raises(RefreshTokenInvalid):
        await services.tokens.refresh(forged)
    await assert_untouched(services, pair)


async def test_forged_old_generation_does_not_revoke(
    services: Container, alice: str, clock: ManualClock
) -> None:
    """A forged token claiming an old generation of a rotated session is not taken as reuse."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    clock.advance(60)
    old = parse(first.refresh_token)
    raw = b64url_decode(first.refresh_token[len("lkrt.") :])
    forged = "lkrt." + b64url_encode(raw[:24] + secrets.token_bytes(32) + raw[56:])
    with pytest.raises(RefreshTokenInvalid):
        await services.tokens.refresh(forged)
    assert parse(forged).sid == old.sid
    await assert_untouched(services, second)


@pytest.mark.parametrize(
    "junk", ["", "lkrt.", "lkrt." + "A" * 96, "not a token", None, 42, b"lkrt.", ["lkrt."]]
)
async def test_junk_is_invalid(services: Container, alice: str, junk: object) -> None:
    """Anything that is not a token of this server is RefreshTokenInvalid."""
    pair = await login(services)
    with pytest.raises(RefreshTokenInvalid):
        await services.tokens.refresh(junk)
    await assert_untouched(services, pair)


# --- expiry ----------------------------------------------------------------------------------


async def test_idle_expiry(
    services: Container, alice: str, clock: ManualClock, settings: Settings
) -> None:
    """A token unused for refresh_ttl is expired; one used just before still works."""
    first = await login(services)
    clock.advance(settings.refresh_ttl - 1)
    second = await services.tokens.refresh(first.refresh_token)
    assert second.refresh_expires_in == settings.refresh_ttl
    clock.advance(settings.refresh_ttl)
    with pytest.raises(RefreshTokenExpired):
        await services.tokens.refresh(second.refresh_token)
    clock.advance(DAY)
    with pytest.raises(RefreshTokenExpired):
        await services.tokens.refresh(second.refresh_token)


async def test_absolute_expiry(
    services: Container, alice: str, clock: ManualClock, settings: Settings
) -> None:
    """Refreshing every 6 days keeps a session only until day 30; the lifetime never exceeds it."""
    assert (settings.refresh_ttl, settings.session_ttl) == (7 * DAY, 30 * DAY)
    started = clock.now()
    pair = await login(services)
    cap = started + settings.session_ttl
    assert pair.refresh_expires_in <= cap - clock.now()
    days = 0
    while True:
        clock.advance(6 * DAY)
        days += 6
        if days >= 30:
            break
        pair = await services.tokens.refresh(pair.refresh_token)
        assert 0 < pair.refresh_expires_in <= cap - clock.now()
        assert pair.refresh_expires_in <= settings.refresh_ttl
    assert days == 30
    assert pair.refresh_expires_in == 6 * DAY  # issued on day 24: capped by day 30
    with pytest.raises(RefreshTokenExpired):
        await services.tokens.refresh(pair.refresh_token)


async def test_absolute_expiry_last_second(
    services: Container, alice: str, clock: ManualClock, settings: Settings
) -> None:
    """A refresh one second before the absolute cap works and is given one second to live."""
    cap = clock.now() + settings.session_ttl
    pair = await login(services)
    while clock.now() + 6 * DAY < cap:
        clock.advance(6 * DAY)
        pair = await services.tokens.refresh(pair.refresh_token)
    clock.set(cap - 1)
    last = await services.tokens.refresh(pair.refresh_token)
    assert last.refresh_expires_in == 1
    clock.advance(1)
    with pytest.raises(RefreshTokenExpired):
        await services.tokens.refresh(last.refresh_token)


# --- storage ---------------------------------------------------------------------------------


async def test_storage_is_one_row_per_session(services: Container, alice: str) -> None:
    """After 50 rotations the session is still one row."""
    pair = await login(services)
    sid = parse(pair.refresh_token).sid
    for _ in range(50):
        pair = await services.tokens.refresh(pair.refresh_token)
    assert parse(pair.refresh_token).generation == 50
    assert await count_sessions(services, sid) == 1
    assert await count_sessions(services) == 1


def _database_bytes(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("latchkey.db*")))


def _raw_session_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "latchkey.db") as conn:
        return conn.execute("SELECT * FROM sessions").fetchall()


async def test_only_hashes_are_stored(services: Container, alice: str, settings: Settings) -> None:
    """Neither a refresh token nor its secret or MAC appears in the row or the database file."""
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token)
    wire: list[bytes] = []  # every encoding of each issued token
    hidden: list[bytes] = []  # the secret and the MAC of each issued token
    for token in (first.refresh_token, second.refresh_token):
        raw = b64url_decode(token[len("lkrt.") :])
        secret, mac = raw[24:56], raw[56:]
        wire += [token.encode(), token[len("lkrt.") :].encode(), raw]
        hidden += [secret, mac, secret.hex().encode(), b64url_encode(secret).encode()]
    needles = wire + hidden

    session = await session_of(services, second.refresh_token)
    assert session.current_hash == parse(second.refresh_token).digest
    assert session.previous_hash == parse(first.refresh_token).digest
    for value in (session.current_hash, session.previous_hash, session.rotation_nonce):
        assert value is not None
        for needle in hidden:
            assert needle not in value
            assert value not in needle

    if not settings.is_sqlite:
        return  # the raw-file checks below read the SQLite file
    rows = _raw_session_rows(settings.data_dir)
    assert len(rows) == 1
    for column in rows[0]:
        data = column if isinstance(column, bytes) else str(column).encode()
        for needle in needles:
            assert needle not in data

    dump = _database_bytes(settings.data_dir)
    assert parse(second.refresh_token).digest in dump  # the hash is there: we looked right
    for needle in needles:
        assert needle not in dump
