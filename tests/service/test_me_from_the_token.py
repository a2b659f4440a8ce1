"""GET /auth/me answers from the verified token, the deny-list and a user's name read once:
no access token outlives its session, and revocations reach it by the rules of
docs/sessions.md (at once in the revoking process, through the feed in the others)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from latchkey.bootstrap import Container, build
from latchkey.core.clock import ManualClock
from latchkey.core.errors import InvalidToken, RevokedToken
from latchkey.services import ClientInfo
from latchkey.settings import Settings

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")


@pytest.fixture
async def short(settings: Settings, clock: ManualClock) -> AsyncIterator[Container]:
    """Sessions of one hour at most, access tokens of 15 minutes."""
    values: dict[str, Any] = {
        **settings.model_dump(),
        "session_ttl": 3600,
        "refresh_ttl": 3600,
        "access_ttl": 900,
    }
    services = build(Settings(_env_file=None, **values), clock=clock)  # type: ignore[call-arg]
    await services.migrate()
    try:
        yield services
    finally:
        await services.close()


async def test_no_access_token_outlives_its_session(short: Container, clock: ManualClock) -> None:
    await short.accounts.add_user("alice", PASSWORD)
    pair = await short.tokens.login("alice", PASSWORD, CLIENT)
    ends = clock.now() + 3600  # the session's absolute expiry
    assert pair.expires_in == 900
    clock.advance(3300)
    pair = await short.tokens.refresh(pair.refresh_token, CLIENT)
    claims = short.verifier.verify(pair.access_token)
    assert claims["exp"] == int(ends)  # not now + 900
    assert pair.expires_in == claims["exp"] - claims["iat"] <= 300
    clock.advance(pair.expires_in)
    with pytest.raises(InvalidToken):  # expired with its session (invalid_token, 401)
        short.verifier.verify(pair.access_token)


async def test_me_follows_revocations_by_the_rules_of_the_deny_list(services: Container) -> None:
    await services.accounts.add_user("alice", PASSWORD)
    first = await services.tokens.login("alice", PASSWORD, CLIENT)
    second = await services.tokens.login("alice", PASSWORD, CLIENT)
    claims = services.tokens.verify_access_token(first.access_token)
    me = await services.tokens.me(claims)
    assert (me["sub"], me["username"], me["sid"]) == (claims["sub"], "alice", claims["sid"])

    # Revoked by this process: refused at once.
    await services.tokens.logout_with_access_token(claims, CLIENT)
    with pytest.raises(RevokedToken):
        services.tokens.verify_access_token(first.access_token)

    # Revoked by another process (in the database only): /auth/me still answers from the
    # token until this process reads the revocation feed, then refuses it.
    other = services.tokens.verify_access_token(second.access_token)
    assert await services.store.revoke_session(other["sid"], "admin", services.clock.now())
    assert (await services.tokens.me(other))["username"] == "alice"
    assert await services.sessions.sync_revocations() >= 1
    with pytest.raises(RevokedToken):
        services.tokens.verify_access_token(second.access_token)


async def test_a_user_gone_before_their_name_was_read_is_refused(services: Container) -> None:
    user = await services.accounts.add_user("bob", PASSWORD)
    pair = await services.tokens.login("bob", PASSWORD, CLIENT)
    claims = services.tokens.verify_access_token(pair.access_token)
    await services.accounts.set_disabled("bob", disabled=True)
    with pytest.raises(RevokedToken):  # the deny-list, and the user is not read as enabled
        await services.tokens.me({**claims, "sub": user.id})
