"""RedisThrottle: failure counts shared by every instance, same arithmetic as LocalThrottle."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio
from redis_helpers import UNREACHABLE_URL, WINDOW, MakeThrottle

from latchkey.adapters.throttle import LocalThrottle
from latchkey.core.clock import ManualClock

pytestmark = pytest.mark.anyio

LIMIT = 3


async def test_failures_on_one_instance_count_on_another(
    redis_url: str, make_throttle: MakeThrottle, clock: ManualClock
) -> None:
    """Failures recorded on A and B add up; both then answer with the same retry_after."""
    a, b = make_throttle(redis_url), make_throttle(redis_url)
    await a.failed("alice")
    clock.advance(10)
    await a.failed("alice")
    assert await b.retry_after("alice", LIMIT) == 0
    clock.advance(5)
    await b.failed("alice")
    assert await a.retry_after("alice", LIMIT) == WINDOW - 15
    assert await b.retry_after("alice", LIMIT) == WINDOW - 15
    assert await a.retry_after("bob", LIMIT) == 0


async def test_retry_after_matches_local_throttle(
    redis_url: str, make_throttle: MakeThrottle, clock: ManualClock
) -> None:
    """For one sequence of failures and clock moves, Redis and local waits agree throughout
    (free failures, growing delays and the hard cap alike)."""
    shared = make_throttle(redis_url)
    local = LocalThrottle(clock, WINDOW)
    for step in (0, 0, 7.5, 20, 0.25, 40, 59.9, 0.1, 61, 0, 0, 0, 0, 1.5, 3, 0, 0, 0, 0, 30):
        clock.advance(step)
        for limit in (1, 2, 3, 5, 10):
            assert await shared.retry_after("k", limit) == await local.retry_after("k", limit)
        for throttle in (shared, local):
            await throttle.failed("k")
        for limit in (1, 2, 3, 5, 10):
            assert await shared.retry_after("k", limit) == await local.retry_after("k", limit)
    assert await local.retry_after("k", 100) > 0  # the sequence did reach the delays


async def test_limit_lifts_after_the_window(
    redis_url: str, make_throttle: MakeThrottle, clock: ManualClock, namespace: str
) -> None:
    """Once the window of the oldest counted failure passes, the key may try again."""
    throttle = make_throttle(redis_url)
    for _ in range(LIMIT):
        await throttle.failed("alice")
    assert await throttle.retry_after("alice", LIMIT) == WINDOW
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        ttl = await client.ttl(f"{namespace}:throttle:alice")
    assert 0 < ttl <= WINDOW
    clock.advance(WINDOW - 1)
    assert await throttle.retry_after("alice", LIMIT) == 1
    clock.advance(1)
    assert await throttle.retry_after("alice", LIMIT) == 0


async def test_reset_clears_the_key_everywhere(
    redis_url: str, make_throttle: MakeThrottle, namespace: str
) -> None:
    """reset() on A deletes the counts that B sees."""
    a, b = make_throttle(redis_url), make_throttle(redis_url)
    for _ in range(LIMIT):
        await a.failed("alice")
    assert await b.retry_after("alice", LIMIT) > 0
    await a.reset("alice")
    assert await b.retry_after("alice", LIMIT) == 0
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        assert await client.exists(f"{namespace}:throttle:alice") == 0


async def test_unreachable_redis_falls_back_to_local_counts(
    make_throttle: MakeThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, counting goes on in process, nothing raises, one warning is logged."""
    caplog.set_level(logging.WARNING, logger="latchkey.redis")
    throttle = make_throttle(UNREACHABLE_URL)
    for _ in range(LIMIT):
        await throttle.failed("alice")
    assert await throttle.retry_after("alice", LIMIT) == WINDOW
    await throttle.reset("alice")
    assert await throttle.retry_after("alice", LIMIT) == 0
    warnings = [r for r in caplog.records if r.name == "latchkey.redis"]
    assert len(warnings) == 1
    assert "not-a-real-password" not in caplog.text
    assert "alice" not in caplog.text
