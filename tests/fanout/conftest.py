"""Fixtures for the Redis adapters: a live Redis (or a skip), a key namespace per test that
is deleted afterwards, adapter factories that close what they made, and a throwaway
``redis-server`` that a test may kill and restart.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis_helpers import (
    REDIS_URL,
    WINDOW,
    MakeRevocations,
    MakeThrottle,
    ThrowawayRedis,
    answers,
)

from latchkey.adapters.redis_revocations import RedisRevocations
from latchkey.adapters.redis_throttle import RedisThrottle
from latchkey.core.clock import ManualClock


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis; the test is skipped when none answers (fails in CI)."""
    if not answers(REDIS_URL):
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def namespace() -> Iterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    ns = f"latchkey-test:{uuid.uuid4().hex}"
    yield ns
    if answers(REDIS_URL):
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{ns}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
async def make_revocations(clock: ManualClock, namespace: str) -> AsyncIterator[MakeRevocations]:
    """Started :class:`RedisRevocations` on the test's channel, closed at the end."""
    made: list[RedisRevocations] = []

    async def make(url: str) -> RedisRevocations:
        revocations = RedisRevocations(url, clock, channel=f"{namespace}:revoked")
        made.append(revocations)
        await revocations.start()
        return revocations

    yield make
    for revocations in made:
        await revocations.close()


@pytest.fixture
async def make_throttle(clock: ManualClock, namespace: str) -> AsyncIterator[MakeThrottle]:
    """:class:`RedisThrottle` under the test's prefix with a 60 s window, closed at the end."""
    made: list[RedisThrottle] = []

    def make(url: str) -> RedisThrottle:
        throttle = RedisThrottle(url, clock, WINDOW, prefix=f"{namespace}:throttle:")
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        await throttle.close()


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A redis-server of this test alone, killed by the finalizer."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
