"""RedisDenyList: a resource server's Verifier rejects a revoked session's tokens at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis_helpers import MakeRevocations, eventually

from latchkey import ManualClock, RevokedToken, SigningKey, Verifier
from latchkey.core.access import AccessTokenIssuer
from latchkey.guard.denylist import RedisDenyList

ISSUER = "https://auth.example.test"
AUDIENCE = "api"


def token_for(key: SigningKey, clock: ManualClock, sid: str) -> str:
    issuer = AccessTokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl=900, clock=clock)
    return issuer.issue(subject="user-1", sid=sid, scope="read", auth_time=int(clock.now())).token


Follow = Callable[[], Awaitable[RedisDenyList]]


@pytest.fixture
async def follow(redis_url: str, namespace: str, clock: ManualClock) -> AsyncIterator[Follow]:
    """Start RedisDenyLists on the test's channel; closed at the end."""
    made: list[RedisDenyList] = []

    async def start() -> RedisDenyList:
        denylist = await asyncio.to_thread(
            RedisDenyList, redis_url, channel=f"{namespace}:revoked", clock=clock
        )
        made.append(denylist)
        return denylist

    yield start
    for denylist in made:
        await asyncio.to_thread(denylist.close)


async def test_a_revocation_reaches_the_verifier_within_a_second(
    redis_url: str,
    make_revocations: MakeRevocations,
    follow,
    clock: ManualClock,  # type: ignore[no-untyped-def]
) -> None:
    service = await make_revocations(redis_url)  # what the latchkey service announces on
    denylist = await follow()
    key = SigningKey.generate("ES256")
    verifier = Verifier(
        [key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, revoked_sessions=denylist
    )
    revoked, other = token_for(key, clock, "sid-out"), token_for(key, clock, "sid-in")
    assert verifier.verify(revoked)["sid"] == "sid-out"

    await service.publish("sid-out", clock.now() + 900)

    assert await eventually(lambda: "sid-out" in denylist, within=1.0)
    with pytest.raises(RevokedToken):
        verifier.verify(revoked)
    assert verifier.verify(other)["sid"] == "sid-in"


async def test_revocations_made_before_it_started_are_known(
    redis_url: str,
    make_revocations: MakeRevocations,
    follow,
    clock: ManualClock,  # type: ignore[no-untyped-def]
) -> None:
    service = await make_revocations(redis_url)
    await service.publish("sid-early", clock.now() + 900)
    denylist = await follow()
    assert await eventually(lambda: "sid-early" in denylist, within=1.0)
    clock.advance(900)  # the session's last access token has expired: the entry goes
    assert "sid-early" not in denylist
    assert len(denylist) == 0


async def test_close_is_idempotent(follow: Follow) -> None:
    denylist = await follow()
    await asyncio.to_thread(denylist.close)
    await asyncio.to_thread(denylist.close)
    assert "anything" not in denylist


async def test_a_user_cutoff_refuses_that_users_earlier_tokens(
    redis_url: str,
    make_revocations: MakeRevocations,
    follow,
    clock: ManualClock,  # type: ignore[no-untyped-def]
) -> None:
    """Every session of user-1 ended at once: one entry refuses all of its earlier tokens,
    the exempt session's and later ones pass, and other users are untouched."""
    service = await make_revocations(redis_url)
    denylist = await follow()
    key = SigningKey.generate("ES256")
    verifier = Verifier(
        [key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, revoked_sessions=denylist
    )
    earlier = [token_for(key, clock, f"sid-{n}") for n in range(5)]
    kept = token_for(key, clock, "sid-kept")
    clock.advance(0.5)
    await service.publish_user("user-1", clock.now(), clock.now() + 900, exempt_sid="sid-kept")
    assert await eventually(lambda: denylist.refuses("user-1", "sid-0", 0), within=1.0)
    for token in earlier:
        with pytest.raises(RevokedToken):
            verifier.verify(token)
    assert verifier.verify(kept)["sid"] == "sid-kept"
    assert len(denylist) == 1
    clock.advance(1)
    assert verifier.verify(token_for(key, clock, "sid-new"))["sid"] == "sid-new"
