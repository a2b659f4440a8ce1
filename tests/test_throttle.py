"""Login throttling (ASVS v5 6.3.1): free failures, doubling delays, a hard cap, no lockout.

One body per behaviour runs against every implementation of the policy: the in-process
:class:`LocalThrottle`, :class:`RedisThrottle` on the machine's Redis (skipped when none
answers), and :class:`RedisThrottle` with Redis unreachable (its in-process fallback).
Time is a :class:`ManualClock`; nothing sleeps.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio

from latchkey.adapters.redis_throttle import RedisThrottle
from latchkey.adapters.throttle import LocalThrottle, Throttle
from latchkey.core.clock import ManualClock
from latchkey.core.throttle import MAX_DELAY

REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
WINDOW = 900
LIMIT = 100  # a hard cap far away, unless a test is about the cap
KEY = "account:alice"

MakeThrottle = Callable[..., Throttle]


async def _redis_answers() -> bool:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest.fixture(params=["local", "redis", "redis-unreachable"])
async def make(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[MakeThrottle]:
    """Builds throttles of one implementation on the test's clock; closes and cleans up."""
    kind: str = request.param
    prefix = f"latchkey-test:{uuid.uuid4().hex}:throttle:"
    if kind == "redis" and not await _redis_answers():
        pytest.skip(f"no Redis at {REDIS_URL}")
    made: list[Throttle] = []

    def make_(window: int = WINDOW, **policy: int) -> Throttle:
        throttle: Throttle
        if kind == "local":
            throttle = LocalThrottle(clock, window, **policy)
        else:
            url = REDIS_URL if kind == "redis" else UNREACHABLE_URL
            throttle = RedisThrottle(url, clock, window, prefix=prefix, **policy)
        made.append(throttle)
        return throttle

    yield make_
    for throttle in made:
        await throttle.close()
    if kind == "redis":
        async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            assert not [key async for key in client.scan_iter(match=f"{prefix}*")]


async def fail(throttle: Throttle, times: int = 1, key: str = KEY) -> None:
    for _ in range(times):
        await throttle.failed(key)


# --- growing delays --------------------------------------------------------------------------


async def test_first_three_failures_are_free(make: MakeThrottle, clock: ManualClock) -> None:
    """Up to three failures in the window cost nothing, whatever the limit (if above 3)."""
    throttle = make()
    for _ in range(3):
        await fail(throttle)
        assert await throttle.retry_after(KEY, LIMIT) == 0
        assert await throttle.retry_after(KEY, 4) == 0
        clock.advance(0.5)


async def test_each_further_failure_doubles_the_delay_up_to_60_s(make: MakeThrottle) -> None:
    """With the clock standing still: 4th failure → 1 s, 5th → 2 s, 6th → 4 s, … 60 s cap."""
    throttle = make()
    await fail(throttle, 3)
    waits = []
    for _ in range(12):
        await fail(throttle)
        waits.append(await throttle.retry_after(KEY, LIMIT))
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    assert MAX_DELAY == 60


async def test_delay_counts_from_the_last_failure_and_lifts(
    make: MakeThrottle, clock: ManualClock
) -> None:
    """The delay runs from the last failure, rounds up to whole seconds and lifts on time."""
    throttle = make()
    await fail(throttle, 4)  # n = 4 → 1 s
    clock.advance(0.25)
    assert await throttle.retry_after(KEY, LIMIT) == 1  # 0.75 s rounded up
    clock.advance(0.75)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle)  # n = 5 → 2 s after this failure
    assert await throttle.retry_after(KEY, LIMIT) == 2
    clock.advance(1.5)
    assert await throttle.retry_after(KEY, LIMIT) == 1
    clock.advance(0.5)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle)  # n = 6 → 4 s
    clock.advance(3)
    assert await throttle.retry_after(KEY, LIMIT) == 1
    clock.advance(1)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle)  # n = 7 → 8 s
    assert await throttle.retry_after(KEY, LIMIT) == 8


async def test_delay_is_capped_at_max_delay(make: MakeThrottle, clock: ManualClock) -> None:
    """Past 32 s the delay stays at 60 s, and 60 s after the last failure it lifts."""
    throttle = make()
    await fail(throttle, 10)  # n = 10 → min(64, 60)
    assert await throttle.retry_after(KEY, LIMIT) == 60
    clock.advance(59)
    assert await throttle.retry_after(KEY, LIMIT) == 1
    clock.advance(1)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle, 40)  # n = 50: still 60 s, no overflow
    assert await throttle.retry_after(KEY, LIMIT) == 60


async def test_free_and_max_delay_are_settable(make: MakeThrottle) -> None:
    """``free`` and ``max_delay`` change where the doubling starts and where it stops."""
    throttle = make(free=1, max_delay=5)
    await fail(throttle)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    waits = []
    for _ in range(5):
        await fail(throttle)
        waits.append(await throttle.retry_after(KEY, LIMIT))
    assert waits == [1, 2, 4, 5, 5]


# --- the hard cap ----------------------------------------------------------------------------


async def test_hard_cap_at_limit_waits_for_the_window(
    make: MakeThrottle, clock: ManualClock
) -> None:
    """At ``limit`` failures the wait runs until the oldest of the last ``limit`` leaves."""
    throttle = make()
    for _ in range(5):
        await fail(throttle)
        clock.advance(100)  # every delay has passed before the next failure
    # Failures at 0, 100, 200, 300, 400; now = 500; n = 5 → delay 2 s long gone.
    assert await throttle.retry_after(KEY, 6) == 0
    assert await throttle.retry_after(KEY, 5) == WINDOW - 500  # failure at 0 leaves at 900
    assert await throttle.retry_after(KEY, 3) == WINDOW - 300  # the 3rd newest is at 200
    clock.advance(WINDOW - 500 - 1)
    assert await throttle.retry_after(KEY, 5) == 1
    clock.advance(1)
    assert await throttle.retry_after(KEY, 5) == 0  # 4 left in the window: 1 s delay passed


async def test_larger_of_delay_and_cap(make: MakeThrottle, clock: ManualClock) -> None:
    """retry_after answers the larger wait: the cap when it is longer, else the delay."""
    throttle = make(window=100)
    await fail(throttle, 4)  # n = 4: delay 1 s, cap (limit 4) 100 s
    assert await throttle.retry_after(KEY, 4) == 100
    assert await throttle.retry_after(KEY, 5) == 1
    clock.advance(99.5)
    await fail(throttle, 5)  # n = 9: delay 32 s after now; the cap frees at 100
    assert await throttle.retry_after(KEY, 9) == 32
    assert await throttle.retry_after(KEY, 5) == 100


# --- no permanent lockout --------------------------------------------------------------------


async def test_failures_are_forgotten_after_the_window(
    make: MakeThrottle, clock: ManualClock
) -> None:
    """Failures older than the window no longer count: the doubling starts again."""
    throttle = make()
    await fail(throttle, 8)
    assert await throttle.retry_after(KEY, LIMIT) == 16
    assert await throttle.retry_after(KEY, 8) == WINDOW
    clock.advance(WINDOW)
    assert await throttle.retry_after(KEY, 8) == 0
    await fail(throttle, 3)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle)
    assert await throttle.retry_after(KEY, LIMIT) == 1


async def test_old_failures_leaving_the_window_shrink_the_delay(
    make: MakeThrottle, clock: ManualClock
) -> None:
    """The count is of the window only: as old failures leave it, later delays are shorter."""
    throttle = make(window=100)
    await fail(throttle, 4)  # at 0
    clock.advance(60)
    await fail(throttle, 2)  # at 60: n = 6 → 4 s
    assert await throttle.retry_after(KEY, LIMIT) == 4
    clock.advance(40)  # at 100 the four at 0 leave: n = 2, free
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle, 2)  # n = 4 → 1 s
    assert await throttle.retry_after(KEY, LIMIT) == 1


async def test_every_wait_is_bounded_by_the_window(make: MakeThrottle, clock: ManualClock) -> None:
    """With a window shorter than the delay cap, no wait outlasts the window."""
    throttle = make(window=20, free=0)
    waits = []
    for _ in range(8):
        await fail(throttle)
        waits.append(await throttle.retry_after(KEY, LIMIT))
    assert waits == [1, 2, 4, 8, 16, 20, 20, 20]
    clock.advance(20)
    assert await throttle.retry_after(KEY, LIMIT) == 0


async def test_reset_clears_the_key(make: MakeThrottle) -> None:
    """reset (a successful login) forgets the key at once: three free failures again."""
    throttle = make()
    await fail(throttle, 8)
    assert await throttle.retry_after(KEY, 8) == WINDOW
    await throttle.reset(KEY)
    assert await throttle.retry_after(KEY, 8) == 0
    await fail(throttle, 3)
    assert await throttle.retry_after(KEY, LIMIT) == 0
    await fail(throttle)
    assert await throttle.retry_after(KEY, LIMIT) == 1


async def test_keys_are_independent(make: MakeThrottle) -> None:
    """Failures of one key do not delay another; reset of one leaves the other alone."""
    throttle = make()
    await fail(throttle, 5, key="account:alice")
    await fail(throttle, 4, key="address:192.0.2.7")
    assert await throttle.retry_after("account:alice", LIMIT) == 2
    assert await throttle.retry_after("address:192.0.2.7", LIMIT) == 1
    assert await throttle.retry_after("account:bob", LIMIT) == 0
    await throttle.reset("account:alice")
    assert await throttle.retry_after("address:192.0.2.7", LIMIT) == 1
