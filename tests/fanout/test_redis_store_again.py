"""Revocations outlive Redis: after Redis restarts empty, the service stores again what the
database knows (its ``source``), once, and a consumer started after the restart learns it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis_helpers import ThrowawayRedis, eventually

from latchkey.adapters.redis_revocations import RedisRevocations
from latchkey.adapters.revocations import LiveRevocations
from latchkey.core.clock import ManualClock
from latchkey.core.epochs import UserCutoff

pytestmark = pytest.mark.anyio

LIFETIME = 900.0
RESTORED = 10.0  # seconds a test waits for what must follow a restart (a failure bound)


class Database:
    """What the service's source reads: the revocations the database holds, and how often
    it was asked."""

    def __init__(self) -> None:
        self.sessions: dict[str, float] = {}
        self.users: list[tuple[str, UserCutoff, float]] = []
        self.reads = 0

    async def live(self) -> LiveRevocations:
        self.reads += 1
        return LiveRevocations(sessions=list(self.sessions.items()), users=list(self.users))


@pytest.fixture
async def started(
    throwaway_redis: ThrowawayRedis, clock: ManualClock, namespace: str
) -> AsyncIterator[list[RedisRevocations]]:
    """Every RedisRevocations a test makes on the throwaway Redis, closed at the end."""
    made: list[RedisRevocations] = []
    yield made
    for revocations in made:
        await revocations.close()


async def start(
    made: list[RedisRevocations],
    url: str,
    clock: ManualClock,
    namespace: str,
    database: Database | None = None,
) -> RedisRevocations:
    revocations = RedisRevocations(url, clock, channel=f"{namespace}:revoked", socket_timeout=0.5)
    made.append(revocations)
    await revocations.start(database.live if database else None)
    return revocations


async def test_a_consumer_started_after_an_empty_restart_learns_every_live_revocation(
    started: list[RedisRevocations],
    throwaway_redis: ThrowawayRedis,
    clock: ManualClock,
    namespace: str,
    caplog,
) -> None:
    """Two service instances share the database; Redis is killed and restarted empty. A
    consumer started afterwards learns the sessions revoked before the crash and during it,
    and a user's cutoff; the database was read by one instance only, once."""
    url = throwaway_redis.url
    database = Database()
    a = await start(started, url, clock, namespace, database)
    b = await start(started, url, clock, namespace, database)
    reads_at_start = database.reads
    until = clock.now() + LIFETIME
    database.sessions["sid-before"] = until
    await a.publish("sid-before", until)

    throwaway_redis.stop()
    database.sessions["sid-during"] = until  # in the database; Redis cannot be told
    cutoff = UserCutoff(clock.now() - 1, "sid-kept")
    database.users.append(("user-1", cutoff, until))
    with caplog.at_level(logging.INFO, logger="latchkey.redis"):
        throwaway_redis.start()
        late = await start(started, url, clock, namespace)  # a consumer: no source
        assert await eventually(
            lambda: (
                "sid-before" in late.local
                and "sid-during" in late.local
                and late.local.cutoff("user-1") == cutoff
            ),
            within=RESTORED,
        )
        assert await eventually(lambda: "sid-during" in b.local, within=RESTORED)
    assert database.reads == reads_at_start + 1
    stored = [r.getMessage() for r in caplog.records if "stored in it again" in r.getMessage()]
    assert stored == [
        f"Redis at {url} had restarted: 3 revocations stored in it again from the database"
    ]
    # Stored as the fan-out stores them: with the revocation's expiry.
    async with redis.asyncio.Redis.from_url(url) as client:
        ttl = await client.pttl(f"{namespace}:revoked:sid-during")
    assert 0 < ttl <= LIFETIME * 1000


async def test_nothing_is_stored_again_while_redis_keeps_its_data(
    started: list[RedisRevocations],
    throwaway_redis: ThrowawayRedis,
    clock: ManualClock,
    namespace: str,
) -> None:
    """A reconnection to the same Redis process (it kept its data) reads nothing from the
    database: the recorded run id matches."""
    database = Database()
    await start(started, throwaway_redis.url, clock, namespace, database)
    first = database.reads
    await start(started, throwaway_redis.url, clock, namespace, database)
    assert first == 1 and database.reads == 1


async def test_expired_revocations_are_not_stored_again(
    started: list[RedisRevocations],
    throwaway_redis: ThrowawayRedis,
    clock: ManualClock,
    namespace: str,
) -> None:
    """An entry whose tokens have all expired by the time it is stored is left out."""
    database = Database()
    database.sessions["sid-old"] = clock.now() - 1
    database.sessions["sid-live"] = clock.now() + LIFETIME
    await start(started, throwaway_redis.url, clock, namespace, database)
    async with redis.asyncio.Redis.from_url(throwaway_redis.url) as client:
        assert await client.exists(f"{namespace}:revoked:sid-old") == 0
        assert await client.exists(f"{namespace}:revoked:sid-live") == 1
