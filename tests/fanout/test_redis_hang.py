"""The service's Redis adapters behind one circuit, against a redis-server that hangs
(SIGSTOP): the throttle and the revocation announcements answer while Redis is still hung,
from this process, and go back to Redis once a probe gets an answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from redis_helpers import WINDOW, ThrowawayRedis, eventually

from latchkey.adapters.redis_circuit import Circuit, circuit_for
from latchkey.adapters.redis_revocations import RedisRevocations
from latchkey.adapters.redis_throttle import RedisThrottle
from latchkey.core.clock import ManualClock

pytestmark = pytest.mark.anyio

TIMEOUT = 2.0
LIMIT = 3
LIFETIME = 900.0


class Pair:
    """One instance's throttle and revocations sharing one circuit, as bootstrap wires them."""

    def __init__(self, url: str, clock: ManualClock, namespace: str) -> None:
        self.circuit: Circuit = circuit_for(url, timeout=TIMEOUT, wait=0.5)
        self.throttle = RedisThrottle(
            url, clock, WINDOW, prefix=f"{namespace}:t:", socket_timeout=TIMEOUT,
            circuit=self.circuit,
        )  # fmt: skip
        self.revocations = RedisRevocations(
            url, clock, channel=f"{namespace}:revoked", socket_timeout=TIMEOUT,
            circuit=self.circuit,
        )  # fmt: skip

    async def close(self) -> None:
        await self.revocations.close()
        await self.throttle.close()


@pytest.fixture
async def pair(
    throwaway_redis: ThrowawayRedis, clock: ManualClock, namespace: str
) -> AsyncIterator[Pair]:
    made = Pair(throwaway_redis.url, clock, namespace)
    await made.revocations.start()
    yield made
    throwaway_redis.resume()
    await made.close()


async def test_the_throttle_answers_while_redis_hangs(
    pair: Pair, throwaway_redis: ThrowawayRedis, clock: ManualClock, namespace: str, caplog
) -> None:
    """Failures are counted in Redis; Redis hangs: every call is answered while it is still
    hung (in-process counts), the circuit opens with one WARNING; Redis answers again: the
    circuit closes and the counts are Redis's again."""
    await pair.throttle.failed("alice")
    throwaway_redis.pause()
    with caplog.at_level(logging.INFO, logger="latchkey.redis"):
        for _ in range(LIMIT):
            await pair.throttle.failed("bob")
        assert await pair.throttle.retry_after("bob", LIMIT) == WINDOW  # local counts
        assert await pair.throttle.retry_after("alice", LIMIT) == 0  # Redis's one is not here
        assert await eventually(lambda: pair.circuit.is_open, within=10)
        throwaway_redis.resume()
        assert await eventually(lambda: not pair.circuit.skipping, within=10)
    other = RedisThrottle(throwaway_redis.url, clock, WINDOW, prefix=f"{namespace}:t:")
    try:
        await pair.throttle.failed("alice")
        await pair.throttle.failed("alice")
        assert await other.retry_after("alice", LIMIT) == WINDOW  # 3 in Redis: the cap
    finally:
        await other.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "latchkey.redis"]
    assert [level for level, _ in lines if level >= logging.WARNING] == [logging.WARNING]
    assert "bob" not in caplog.text and "alice" not in caplog.text


async def test_a_logout_while_redis_hangs_is_announced_once_it_answers(
    pair: Pair, throwaway_redis: ThrowawayRedis, clock: ManualClock, namespace: str
) -> None:
    """A revocation published while Redis hangs is applied here at once (Redis still hung),
    kept pending, and reaches another instance once Redis answers again."""
    throwaway_redis.pause()
    await pair.revocations.publish("sid-hung", clock.now() + LIFETIME)
    assert "sid-hung" in pair.revocations.local
    assert pair.revocations.pending == 1
    await pair.revocations.publish("sid-hung-2", clock.now() + LIFETIME)  # circuit skipping
    assert pair.revocations.pending == 2
    throwaway_redis.resume()
    other = RedisRevocations(throwaway_redis.url, clock, channel=f"{namespace}:revoked")
    await other.start()
    try:
        assert await eventually(
            lambda: "sid-hung" in other.local and "sid-hung-2" in other.local, within=10
        )
    finally:
        await other.close()
    assert pair.revocations.pending == 0
