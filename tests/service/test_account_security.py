"""Account security through Container, on SQLite and PostgreSQL: password change, logout-all,
ending one's own sessions, disabled and deleted accounts, registration, no user enumeration,
the audit trail, the revocation feed from the database and the background purge."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from latchkey.bootstrap import Container, build
from latchkey.core.audit import AuditEvent, AuditKind
from latchkey.core.b64 import b64url_decode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import (
    AccountDisabled,
    Conflict,
    InvalidCredentials,
    InvalidRequest,
    NotFound,
    RefreshTokenReused,
    RevokedToken,
    SessionRevoked,
    TooManyRequests,
    WrongPassword,
)
from latchkey.core.throttle import FREE_FAILURES
from latchkey.core.users import User
from latchkey.core.verifier import AccessClaims
from latchkey.services import ClientInfo, TokenPair
from latchkey.settings import Settings
from support import make_settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "plum orbit kettle saxophone"
BOB_PASSWORD = "violet lantern under the bridge"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")
DAY = 86_400

ServiceFactory = Callable[..., AbstractAsyncContextManager[Container]]


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def open_service(settings: Settings, clock: ManualClock) -> ServiceFactory:
    """Opens a further service on the same database (same clock), settings overridden:
    another instance of the same deployment."""

    @asynccontextmanager
    async def open_(**overrides: Any) -> AsyncIterator[Container]:
        values: dict[str, Any] = {
            "database_url": settings.database_url,
            "secret_key": settings.secret_key,
            **overrides,
        }
        svc = build(make_settings(settings.data_dir, **values), clock=clock)
        await svc.migrate()
        try:
            yield svc
        finally:
            await svc.close()

    return open_


@pytest.fixture
async def alice(services: Container) -> User:
    return await services.accounts.add_user("alice", PASSWORD, scope="read write")


@pytest.fixture
async def bob(services: Container) -> User:
    return await services.accounts.add_user("bob", BOB_PASSWORD, scope="read")


async def login(
    services: Container,
    username: str = "alice",
    password: str = PASSWORD,
    client: ClientInfo = CLIENT,
) -> TokenPair:
    return await services.tokens.login(username, password, client)


def claims_of(services: Container, pair: TokenPair) -> AccessClaims:
    return services.verifier.verify(pair.access_token)


def sid_of(pair: TokenPair) -> str:
    """The session id of a pair, read from its access token's payload without verifying it
    (the token may be revoked by now)."""
    payload = json.loads(b64url_decode(pair.access_token.split(".")[1]))
    return str(payload["sid"])


async def assert_alive(services: Container, pair: TokenPair) -> TokenPair:
    """The access token is accepted and the refresh token rotates; the new pair."""
    services.verifier.verify(pair.access_token)
    return await services.tokens.refresh(pair.refresh_token, CLIENT)


async def assert_revoked(
    services: Container, pair: TokenPair, refresh_error: type[Exception] = SessionRevoked
) -> None:
    """The access token is refused at once (deny-list), the refresh token with exactly
    ``refresh_error``."""
    with pytest.raises(RevokedToken):
        services.verifier.verify(pair.access_token)
    with pytest.raises(refresh_error) as caught:
        await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert caught.type is refresh_error


async def password_hash(services: Container, user: User) -> str:
    stored = await services.store.user_by_id(user.id)
    assert stored is not None
    return stored.password_hash


async def kinds(services: Container, username: str | None = None) -> list[AuditKind]:
    """The kinds of the audit events, oldest first."""
    return [e.kind for e in reversed(await services.audit.trail(username=username))]


async def mass_revocations(services: Container) -> list[AuditEvent]:
    """The SESSIONS_REVOKED events (every session of a user at once), oldest first."""
    events = await services.audit.trail()
    return [e for e in reversed(events) if e.kind is AuditKind.SESSIONS_REVOKED]


async def revocations(services: Container) -> list[AuditEvent]:
    """The SESSION_REVOKED events, ordered by sid."""
    events = await services.audit.trail()
    return sorted(
        (e for e in events if e.kind is AuditKind.SESSION_REVOKED), key=lambda e: e.sid or ""
    )


# --- password change -------------------------------------------------------------------------


async def test_password_change_with_a_wrong_current_password(
    services: Container, alice: User
) -> None:
    """WrongPassword, and nothing changes: hash, sessions, the password that logs in."""
    mine, other = await login(services), await login(services)
    before = await password_hash(services, alice)
    with pytest.raises(WrongPassword):
        await services.accounts.change_password(
            claims_of(services, mine), "not the password at all", NEW_PASSWORD, CLIENT
        )
    assert await password_hash(services, alice) == before
    await assert_alive(services, mine)
    await assert_alive(services, other)
    assert AuditKind.PASSWORD_CHANGED not in await kinds(services)
    assert AuditKind.SESSION_REVOKED not in await kinds(services)
    assert AuditKind.SESSIONS_REVOKED not in await kinds(services)
    with pytest.raises(InvalidCredentials):
        await login(services, password=NEW_PASSWORD)
    await login(services)


@pytest.mark.parametrize(
    "new",
    [
        "short1",  # under 8 characters
        "password1",  # in the common-password list
        "Password1",  # the list is compared case-insensitively
        "alice-and-her-long-passphrase",  # contains the username
        "ALICE",  # is the username (too short as well)
        "latchkey",  # the service's name
    ],
)
async def test_password_change_breaking_the_policy(
    services: Container, alice: User, new: str
) -> None:
    """A new password the policy refuses is an InvalidRequest, and nothing changes."""
    mine, other = await login(services), await login(services)
    before = await password_hash(services, alice)
    with pytest.raises(InvalidRequest) as caught:
        await services.accounts.change_password(claims_of(services, mine), PASSWORD, new, CLIENT)
    assert new not in caught.value.description
    assert await password_hash(services, alice) == before
    await assert_alive(services, mine)
    await assert_alive(services, other)
    assert AuditKind.PASSWORD_CHANGED not in await kinds(services)
    await login(services)


async def test_password_change_revokes_every_other_session(
    services: Container, alice: User, bob: User, clock: ManualClock
) -> None:
    """The caller's session survives; every other session of the user is revoked at once
    (refresh and access token); the old password stops working, the new one works."""
    mine, second, third = await login(services), await login(services), await login(services)
    bobs = await login(services, "bob", BOB_PASSWORD)
    clock.advance(1)  # the tokens were issued before the change (iat is whole seconds)
    await services.accounts.change_password(
        claims_of(services, mine), PASSWORD, NEW_PASSWORD, CLIENT
    )

    await assert_alive(services, mine)
    await assert_revoked(services, second)
    await assert_revoked(services, third)
    await assert_alive(services, bobs)
    with pytest.raises(InvalidCredentials):
        await login(services)
    await assert_alive(services, await login(services, password=NEW_PASSWORD))

    changed = [
        e
        for e in await services.audit.trail(username="alice")
        if e.kind is AuditKind.PASSWORD_CHANGED
    ]
    assert len(changed) == 1
    assert changed[0].user_id == alice.id
    assert changed[0].sid == sid_of(mine)
    assert changed[0].address == CLIENT.address
    # One event for the whole revocation, with the count; none per session.
    assert [(e.sid, e.user_id, e.reason, e.count) for e in await mass_revocations(services)] == [
        (sid_of(mine), alice.id, "password_changed", 2)
    ]
    assert await revocations(services) == []


async def test_wrong_current_passwords_are_throttled(
    services: Container, alice: User, clock: ManualClock
) -> None:
    """After the free failures (and one that starts the delay), a change attempt waits
    ``retry_after`` seconds, even with the right password; after that wait it works."""
    mine = await login(services)
    claims = claims_of(services, mine)
    for _ in range(FREE_FAILURES + 1):
        with pytest.raises(WrongPassword):
            await services.accounts.change_password(
                claims, "a wrong guess here", NEW_PASSWORD, CLIENT
            )
    with pytest.raises(TooManyRequests) as caught:
        await services.accounts.change_password(claims, "another wrong guess", NEW_PASSWORD, CLIENT)
    wait = caught.value.retry_after
    assert wait >= 1
    with pytest.raises(TooManyRequests):
        await services.accounts.change_password(claims, PASSWORD, NEW_PASSWORD, CLIENT)
    assert AuditKind.PASSWORD_CHANGED not in await kinds(services)

    clock.advance(wait)
    await services.accounts.change_password(claims, PASSWORD, NEW_PASSWORD, CLIENT)
    await login(services, password=NEW_PASSWORD)


# --- logout-all, ending one session, listing sessions ----------------------------------------


async def test_logout_all_revokes_every_session(
    services: Container, alice: User, bob: User, clock: ManualClock
) -> None:
    """Every session of the user is revoked, the caller's too; other users keep theirs."""
    pairs = [await login(services) for _ in range(3)]
    bobs = await login(services, "bob", BOB_PASSWORD)
    clock.advance(1)
    assert await services.sessions.logout_all(claims_of(services, pairs[0]), CLIENT) == 3
    for pair in pairs:
        await assert_revoked(services, pair)
    await assert_alive(services, bobs)
    assert [
        (e.sid, e.user_id, e.reason, e.address, e.count) for e in await mass_revocations(services)
    ] == [(None, alice.id, "logout_all", CLIENT.address, 3)]
    assert await revocations(services) == []


async def test_end_own_other_session(services: Container, alice: User) -> None:
    """A user ends another of their own sessions; the caller's stays."""
    mine, other = await login(services), await login(services)
    await services.sessions.end_own_session(claims_of(services, mine), sid_of(other), CLIENT)
    await assert_revoked(services, other)
    await assert_alive(services, mine)
    assert [(e.sid, e.user_id, e.reason) for e in await revocations(services)] == [
        (sid_of(other), alice.id, "revoked_by_user")
    ]
    # Ended already: a 404 like any session that is not the caller's to end.
    with pytest.raises(NotFound):
        await services.sessions.end_own_session(claims_of(services, mine), sid_of(other), CLIENT)


async def test_end_someone_elses_or_unknown_session(
    services: Container, alice: User, bob: User
) -> None:
    """Someone else's sid, an unknown sid and a malformed one are NotFound alike; the
    other user's session keeps working."""
    mine = await login(services)
    bobs = await login(services, "bob", BOB_PASSWORD)
    claims = claims_of(services, mine)
    for sid in (sid_of(bobs), "0" * 32, "not-a-session-id"):
        with pytest.raises(NotFound) as caught:
            await services.sessions.end_own_session(claims, sid, CLIENT)
        assert caught.value.description == "No such session."
    await assert_alive(services, bobs)
    await assert_alive(services, mine)
    assert await revocations(services) == []


async def test_sessions_of_lists_live_own_sessions(
    services: Container, alice: User, bob: User, clock: ManualClock, settings: Settings
) -> None:
    """Only the caller's live sessions, the caller's marked current; revoked and expired
    sessions are absent."""
    phone = await login(services, client=ClientInfo(user_agent="phone", address="198.51.100.1"))
    laptop = await login(services, client=ClientInfo(user_agent="laptop", address="198.51.100.2"))
    ended = await login(services)
    await login(services, "bob", BOB_PASSWORD)
    await services.sessions.end_own_session(claims_of(services, phone), sid_of(ended), CLIENT)

    views = await services.sessions.sessions_of(claims_of(services, phone))
    assert {v.sid: (v.current, v.user_agent, v.address) for v in views} == {
        sid_of(phone): (True, "phone", "198.51.100.1"),
        sid_of(laptop): (False, "laptop", "198.51.100.2"),
    }
    from_laptop = await services.sessions.sessions_of(claims_of(services, laptop))
    assert {v.sid for v in from_laptop if v.current} == {sid_of(laptop)}

    # The phone refreshes just before its idle expiry; the laptop lets it pass.
    clock.advance(settings.refresh_ttl - 60)
    phone = await services.tokens.refresh(phone.refresh_token, CLIENT)
    clock.advance(120)
    views = await services.sessions.sessions_of(claims_of(services, phone))
    assert [(v.sid, v.current) for v in views] == [(sid_of(phone), True)]
    assert views[0].last_used_at == clock.now() - 120


# --- the cap on live sessions per user ---------------------------------------------------------


async def test_a_login_past_the_cap_ends_the_oldest_session(
    services: Container, alice: User, bob: User, settings: Settings, clock: ManualClock
) -> None:
    """With LATCHKEY_MAX_SESSIONS_PER_USER=3 a fourth login ends the oldest session (refresh
    and access token, at once) and keeps the three newest; audited as session_limit; other
    users' sessions do not count."""
    capped = build(settings.model_copy(update={"max_sessions_per_user": 3}), clock=clock)
    try:
        await capped.migrate()  # loads the signing keys
        bobs = await login(capped, "bob", BOB_PASSWORD)
        pairs = []
        for _ in range(3):
            pairs.append(await login(capped))
            clock.advance(1)
        assert await revocations(capped) == []
        fourth = await login(capped)
        await assert_revoked(capped, pairs[0])
        for pair in (*pairs[1:], fourth, bobs):
            await assert_alive(capped, pair)
        assert [(e.sid, e.user_id, e.reason, e.address) for e in await revocations(capped)] == [
            (sid_of(pairs[0]), alice.id, "session_limit", CLIENT.address)
        ]
        live = await capped.sessions.list_sessions("alice")
        assert {s.sid for s in live} == {sid_of(pair) for pair in (*pairs[1:], fourth)}
    finally:
        await capped.close()


# --- disabled and deleted accounts -----------------------------------------------------------


async def test_disabled_account(
    services: Container, alice: User, bob: User, clock: ManualClock
) -> None:
    """Disabling revokes every session at once; its refresh tokens get AccountDisabled;
    login with the right password gets AccountDisabled, with a wrong one the usual
    InvalidCredentials (nothing for a guesser to learn)."""
    pairs = [await login(services), await login(services)]
    bobs = await login(services, "bob", BOB_PASSWORD)
    clock.advance(1)
    assert await services.accounts.set_disabled("alice", disabled=True) == 2
    for pair in pairs:
        await assert_revoked(services, pair, AccountDisabled)
    await assert_alive(services, bobs)

    with pytest.raises(AccountDisabled):
        await login(services)
    with pytest.raises(InvalidCredentials) as wrong:
        await login(services, password="definitely not it")
    with pytest.raises(InvalidCredentials) as unknown:
        await login(services, "nobody", "definitely not it")
    assert wrong.type is unknown.type is InvalidCredentials
    assert wrong.value.description == unknown.value.description

    trail = await services.audit.trail(username="alice")
    assert [e.reason for e in trail if e.kind is AuditKind.LOGIN_FAILED] == [
        "wrong_password",
        "user_disabled",
    ]
    assert AuditKind.USER_DISABLED in [e.kind for e in trail]

    assert await services.accounts.set_disabled("alice", disabled=False) == 0
    await assert_alive(services, await login(services))
    for pair in pairs:  # enabling does not bring old sessions back
        await assert_revoked(services, pair, SessionRevoked)
    assert AuditKind.USER_ENABLED in await kinds(services, "alice")


async def test_disable_unknown_user(services: Container, alice: User) -> None:
    with pytest.raises(NotFound):
        await services.accounts.set_disabled("nobody", disabled=True)


async def test_delete_user(services: Container, alice: User, bob: User, clock: ManualClock) -> None:
    """Deleting revokes every session, login fails as for any unknown name, and the audit
    trail (found by the deleted user's name) keeps USER_DELETED."""
    pairs = [await login(services), await login(services)]
    bobs = await login(services, "bob", BOB_PASSWORD)
    clock.advance(1)
    assert await services.accounts.delete_user("alice") == 2
    for pair in pairs:
        await assert_revoked(services, pair)
    await assert_alive(services, bobs)
    with pytest.raises(InvalidCredentials) as caught:
        await login(services)
    assert caught.type is InvalidCredentials
    with pytest.raises(NotFound):
        await services.accounts.user_named("alice")
    trail = await services.audit.trail(username="alice")
    deleted = [e for e in trail if e.kind is AuditKind.USER_DELETED]
    assert [(e.user_id, e.username) for e in deleted] == [(alice.id, "alice")]
    assert [(e.reason, e.count) for e in trail if e.kind is AuditKind.SESSIONS_REVOKED] == [
        ("user_deleted", 2)
    ]
    with pytest.raises(NotFound):
        await services.accounts.delete_user("alice")


# --- registration ----------------------------------------------------------------------------


async def test_registration_is_off_by_default(services: Container) -> None:
    with pytest.raises(NotFound):
        await services.accounts.register("carol", NEW_PASSWORD, CLIENT)
    assert await services.accounts.list_users() == []


async def test_registration(open_service: ServiceFactory) -> None:
    """With registration allowed: the name is normalised, a case-insensitive duplicate is a
    Conflict, the password policy applies, and the new user can log in."""
    async with open_service(allow_registration=True) as svc:
        user = await svc.accounts.register("  Carol ", NEW_PASSWORD, CLIENT)
        assert user.username == "Carol"
        for twin in ("carol", "CAROL", " cArOl"):
            with pytest.raises(Conflict):
                await svc.accounts.register(twin, "another fine passphrase", CLIENT)
        await assert_alive(svc, await login(svc, "CAROL", NEW_PASSWORD))
        event = (await svc.audit.trail(username="carol"))[-1]
        assert (event.kind, event.user_id, event.username, event.address) == (
            AuditKind.USER_REGISTERED,
            user.id,
            "Carol",
            CLIENT.address,
        )
        assert [u.username for u in await svc.accounts.list_users()] == ["Carol"]


@pytest.mark.parametrize("username", ["ab", "two words", "-dash", "x" * 65, "tab\tname", ""])
async def test_registration_username_rules(open_service: ServiceFactory, username: str) -> None:
    async with open_service(allow_registration=True) as svc:
        with pytest.raises(InvalidRequest):
            await svc.accounts.register(username, NEW_PASSWORD, CLIENT)
        assert await svc.accounts.list_users() == []


@pytest.mark.parametrize("password", ["short1", "password1", "dave-has-a-long-password"])
async def test_registration_password_policy(open_service: ServiceFactory, password: str) -> None:
    async with open_service(allow_registration=True) as svc:
        with pytest.raises(InvalidRequest):
            await svc.accounts.register("dave", password, CLIENT)
        assert await svc.accounts.list_users() == []


async def test_registrations_are_throttled_per_address(
    open_service: ServiceFactory, clock: ManualClock
) -> None:
    """Every attempt from an address counts (made or not); past the cap that address waits
    while another may still register; the cap lifts once the window has passed."""
    here, there = ClientInfo(address="203.0.113.1"), ClientInfo(address="203.0.113.2")
    async with open_service(
        allow_registration=True, throttle_registrations=3, throttle_window=600
    ) as svc:
        await svc.accounts.register("user1", NEW_PASSWORD, here)
        with pytest.raises(Conflict):
            await svc.accounts.register("USER1", NEW_PASSWORD, here)
        with pytest.raises(InvalidRequest):
            await svc.accounts.register("user2", "short1", here)
        with pytest.raises(TooManyRequests) as caught:
            await svc.accounts.register("user3", NEW_PASSWORD, here)
        assert 1 <= caught.value.retry_after <= 600
        await svc.accounts.register("user4", NEW_PASSWORD, there)
        clock.advance(caught.value.retry_after)
        await svc.accounts.register("user5", NEW_PASSWORD, here)
        assert [u.username for u in await svc.accounts.list_users()] == ["user1", "user4", "user5"]


# --- no user enumeration ---------------------------------------------------------------------


async def test_unknown_user_and_wrong_password_look_alike(services: Container, alice: User) -> None:
    """Same exception class and description; the unknown user's audit row keeps neither the
    name typed nor a user id."""
    with pytest.raises(InvalidCredentials) as unknown:
        await login(services, "mallory", "guess number one")
    with pytest.raises(InvalidCredentials) as wrong:
        await login(services, "alice", "guess number two")
    assert unknown.type is wrong.type is InvalidCredentials
    assert unknown.value.description == wrong.value.description
    assert str(unknown.value) == str(wrong.value)

    failed = [e for e in await services.audit.trail() if e.kind is AuditKind.LOGIN_FAILED]
    by_reason = {e.reason: e for e in failed}
    assert set(by_reason) == {"unknown_user", "wrong_password"}
    assert by_reason["unknown_user"].username is None
    assert by_reason["unknown_user"].user_id is None
    assert by_reason["unknown_user"].address == CLIENT.address
    assert "mallory" not in repr(failed)
    assert (by_reason["wrong_password"].user_id, by_reason["wrong_password"].username) == (
        alice.id,
        "alice",
    )


# --- the audit trail -------------------------------------------------------------------------


async def test_audit_trail_of_a_session(
    services: Container, alice: User, caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    """Login ok/failed, each refresh, reuse detected and the revocation are recorded with the
    session, the user and the address; no row and no log line holds a password or token."""
    caplog.set_level(logging.DEBUG, logger="latchkey.audit")
    wrong = "tr0ub4dor&3 not right"
    thief = ClientInfo(user_agent="curl", address="203.0.113.66")
    with pytest.raises(InvalidCredentials):
        await login(services, password=wrong)
    first = await login(services)
    second = await services.tokens.refresh(first.refresh_token, CLIENT)
    third = await services.tokens.refresh(second.refresh_token, CLIENT)
    clock.advance(services.settings.refresh_grace + 1)  # inside the window it is a straggler
    with pytest.raises(RefreshTokenReused):
        await services.tokens.refresh(first.refresh_token, thief)
    sid = sid_of(first)

    trail = list(reversed(await services.audit.trail(username="alice")))
    assert [e.kind for e in trail] == [
        AuditKind.USER_CREATED,
        AuditKind.LOGIN_FAILED,
        AuditKind.LOGIN_OK,
        AuditKind.REFRESH,
        AuditKind.REFRESH,
        AuditKind.REUSE_DETECTED,
        AuditKind.SESSION_REVOKED,
    ]
    for event in trail[2:]:
        assert (event.user_id, event.sid) == (alice.id, sid)
    assert [e.address for e in trail[2:]] == [CLIENT.address] * 3 + [thief.address] * 2
    assert trail[1].reason == "wrong_password"
    assert trail[-1].reason == "reuse_detected"
    assert trail[-2].reason == "generation 0 of 2"

    secrets = [PASSWORD, wrong]
    for pair in (first, second, third):
        secrets += [pair.access_token, pair.refresh_token, pair.refresh_token.split(".", 1)[1]]
        secrets.append(pair.access_token.rsplit(".", 1)[1])  # the signature alone
    hashes = [await password_hash(services, alice)]
    rows = repr(await services.audit.trail())
    records = [r for r in caplog.records if r.name == "latchkey.audit"]
    assert {r.getMessage() for r in records} == {
        "login_failed",
        "login_ok",
        "refresh",
        "reuse_detected",
        "session_revoked",
    }
    logged = repr([r.__dict__ for r in records])
    for secret in secrets + hashes:
        assert secret not in rows
        assert secret not in logged


async def test_refreshes_are_not_audited_when_turned_off(
    services: Container, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    """With audit_refreshes off a refresh writes no row; the log line is still written."""
    caplog.set_level(logging.DEBUG, logger="latchkey.audit")
    services.tokens.audit_refreshes = False
    pair = await login(services)
    await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert AuditKind.REFRESH not in await kinds(services)
    assert [r for r in caplog.records if r.getMessage() == "refresh"]


# --- the revocation feed from the database ---------------------------------------------------


async def test_sync_revocations_from_another_instance(
    services: Container, alice: User, open_service: ServiceFactory, clock: ManualClock
) -> None:
    """A session revoked by another instance reaches this instance's deny-list with
    sync_revocations, once; others' sessions are not touched."""
    one, two, three = await login(services), await login(services), await login(services)
    async with open_service() as other:
        assert await other.sessions.revoke_session(sid_of(one))
        services.verifier.verify(one.access_token)  # not heard of yet
        assert await services.sessions.sync_revocations() == 1
        with pytest.raises(RevokedToken):
            services.verifier.verify(one.access_token)
        services.verifier.verify(two.access_token)
        assert await services.sessions.sync_revocations() == 0

        clock.advance(1)
        assert await other.sessions.revoke_sessions_of("alice") == 2
        assert await services.sessions.sync_revocations() == 1  # one cutoff for the user
        assert len(services.revocations.local) == 2
        for pair in (two, three):
            with pytest.raises(RevokedToken):
                services.verifier.verify(pair.access_token)
        assert await services.sessions.sync_revocations() == 0
        clock.advance(1)
        assert await services.sessions.sync_revocations() == 0


async def test_sync_revocations_reads_both_feeds_from_one_cursor(
    services: Container,
    alice: User,
    bob: User,
    open_service: ServiceFactory,
    clock: ManualClock,
) -> None:
    """A user's cutoff older than the newest session revocation of the same read is not
    skipped: both feeds are read from where the previous read ended."""
    first, alices = await login(services), await login(services)
    bobs = await login(services, "bob", BOB_PASSWORD)
    assert await services.sessions.revoke_session(sid_of(first))
    assert await services.sessions.sync_revocations() == 0  # its own: known already
    async with open_service() as other:
        clock.advance(2)
        assert await other.sessions.revoke_sessions_of("alice") == 1
        clock.advance(8)
        assert await other.sessions.revoke_session(sid_of(bobs))
        assert await services.sessions.sync_revocations() == 2
    for pair in (alices, bobs):
        with pytest.raises(RevokedToken):
            services.verifier.verify(pair.access_token)


async def test_sync_revocations_reads_one_access_lifetime_back(
    services: Container,
    alice: User,
    open_service: ServiceFactory,
    clock: ManualClock,
    settings: Settings,
) -> None:
    """A fresh instance learns the revocations whose access tokens may still be out there,
    and not those whose tokens have all expired."""
    ttl = settings.access_ttl
    old, edge, new = await login(services), await login(services), await login(services)
    async with open_service() as other:
        assert await other.sessions.revoke_session(sid_of(old))  # at T0
        clock.advance(ttl - 30)
        assert await other.sessions.revoke_session(sid_of(edge))  # its tokens live 30 s more
        clock.advance(32)  # T0 + ttl + 2: the old one is within the feed's overlap, expired
        new = await services.tokens.refresh(new.refresh_token, CLIENT)
        assert await other.sessions.revoke_session(sid_of(new))

        async with open_service() as fresh:
            fresh.verifier.verify(new.access_token)
            assert await fresh.sessions.sync_revocations() == 2
            denied = fresh.revocations.local
            assert sid_of(edge) in denied
            assert sid_of(new) in denied
            assert sid_of(old) not in denied
            assert len(denied) == 2
            with pytest.raises(RevokedToken):
                fresh.verifier.verify(new.access_token)
            assert await fresh.sessions.sync_revocations() == 0
        assert (
            await services.sessions.sync_revocations() == 2
        )  # never synced before: the same start


async def test_live_revocations_are_those_of_the_last_access_lifetime(
    services: Container,
    alice: User,
    clock: ManualClock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Redis gets again after it lost its data: every session revoked within one
    access-token lifetime, with the instant its last token expires; read in pages of the
    same indexed query (here pages of 2)."""
    ttl = settings.access_ttl
    pairs = [await login(services) for _ in range(5)]
    assert await services.sessions.revoke_session(sid_of(pairs[0]))  # at T0: expired below
    clock.advance(10)
    revoked_at = clock.now()
    for pair in pairs[1:4]:
        assert await services.sessions.revoke_session(sid_of(pair))
        clock.advance(1)
    clock.advance(ttl - 12)  # pairs[0] ended ttl + 2 s ago; pairs[1] has 8 s left
    monkeypatch.setattr("latchkey.services.sessions.LIVE_PAGE", 2)
    live = await services.sessions.live_revocations()
    assert dict(live.sessions) == {
        sid_of(pair): revoked_at + n + ttl for n, pair in enumerate(pairs[1:4])
    }
    assert not live.users


# --- background purge ------------------------------------------------------------------------


async def test_purge_shrinks_the_tables_back(
    services: Container, alice: User, clock: ManualClock, settings: Settings
) -> None:
    """Revoked and expired sessions go one access-token lifetime after they ended, audit
    events after the retention, in batches; live sessions and recent events stay."""
    services.sessions.housekeeping = dataclasses.replace(
        services.sessions.housekeeping, purge_batch=5, audit_retention=DAY
    )
    store = services.store
    pairs = [await login(services) for _ in range(30)]
    for pair in pairs[:10]:
        assert await services.sessions.revoke_session(sid_of(pair))
    clock.advance(settings.refresh_ttl - 100)
    kept = [await services.tokens.refresh(pair.refresh_token, CLIENT) for pair in pairs[10:22]]
    clock.advance(200)  # pairs[22:] are now idle-expired, 100 s ago
    assert len(await store.list_sessions(None)) == 30
    audit_rows = len(await store.list_audit())
    assert audit_rows == 1 + 30 + 10 + 12

    async def drain() -> list[int]:
        counts = []
        while deleted := await services.sessions.purge():
            assert deleted <= 2 * 5
            counts.append(deleted)
        return counts

    # Revoked sessions (ended long ago) and the day-old audit rows go; the recently expired
    # sessions stay one access-token lifetime, for late refreshes and the revocation feed.
    counts = await drain()
    assert counts[0] == 10
    assert sum(counts) == 10 + (1 + 30 + 10)
    live = {sid_of(pair) for pair in kept}
    expired = {sid_of(pair) for pair in pairs[22:]}
    assert {s.sid for s in await store.list_sessions(None)} == live | expired
    assert [e.kind for e in await store.list_audit()] == [AuditKind.REFRESH] * 12

    clock.advance(settings.access_ttl)
    assert sum(await drain()) == len(expired)
    assert {s.sid for s in await store.list_sessions(None)} == live
    assert len(await store.list_audit()) == 12
    for pair in kept:  # their access tokens have expired meanwhile; the sessions have not
        await services.tokens.refresh(pair.refresh_token, CLIENT)
