"""Redis login throttle shared by every instance (docs/design.md §6).

:class:`RedisThrottle` counts failures in one sorted set per key (score = the injected clock's
time), read and written in MULTI/EXEC transactions, so every instance sees the same counts, and
applies exactly the policy of :class:`~latchkey.adapters.throttle.LocalThrottle` (the same
:func:`~latchkey.core.throttle.wait_seconds`): the first ``free`` failures in the window are
free, each further one doubles the delay after the last failure up to ``max_delay``, ``limit``
failures wait for the window; nothing lasts longer than the window (OWASP ASVS v5 6.3.1).

With Redis unreachable, hung or slower than the circuit's ``wait``, the throttle DEGRADES to an
in-process :class:`LocalThrottle` with the same window, free failures and delays (single-node
counts) and never raises; counts recorded there are not merged back. Every call goes through
a :class:`~latchkey.adapters.redis_circuit.Circuit`, so a hung Redis costs a login at most
``wait`` once, not a timeout per call.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from ..core.clock import Clock
from ..core.throttle import FREE_FAILURES, MAX_DELAY, wait_seconds
from .redis_circuit import Circuit, CircuitOpen, circuit_for
from .redis_common import connect
from .throttle import LocalThrottle


class RedisThrottle:
    """Sliding-window failure counts shared by every instance (one sorted set per key).

    Same growing delays and hard cap as :class:`~latchkey.adapters.throttle.LocalThrottle` (ASVS v5
    6.3.1); scores are the injected clock's time, never Redis's.
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        window: int,
        *,
        free: int = FREE_FAILURES,
        max_delay: int = MAX_DELAY,
        prefix: str = "latchkey:throttle:",
        socket_timeout: float = 0.5,
        circuit: Circuit | None = None,
    ) -> None:
        self._clock = clock
        self._window = window
        self._free = free
        self._max_delay = max_delay
        self._prefix = prefix
        self._redis = connect(url, socket_timeout, retries=1)
        self._circuit = circuit or circuit_for(url, timeout=socket_timeout)
        self._fallback = LocalThrottle(clock, window, free=free, max_delay=max_delay)

    async def retry_after(self, key: str, limit: int, *, free: int | None = None) -> int:
        now = self._clock.now()
        name = self._prefix + key

        async def counts() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(name, "-inf", now - self._window)
                pipe.zcard(name)
                pipe.zrange(name, -1, -1, withscores=True)
                pipe.zrange(name, -limit, -limit, withscores=True)
                return list(await pipe.execute())

        try:
            _, count, newest, nth_newest = await self._circuit.call(counts)
        except CircuitOpen:
            return await self._fallback.retry_after(key, limit, free=free)
        count = int(count)
        return wait_seconds(
            now,
            count=count,
            newest=float(newest[0][1]) if newest else None,
            limit_oldest=float(nth_newest[0][1]) if 0 < limit <= count and nth_newest else None,
            limit=limit,
            window=self._window,
            free=self._free if free is None else free,
            max_delay=self._max_delay,
        )

    async def failed(self, key: str) -> None:
        now = self._clock.now()
        name = self._prefix + key
        member = f"{now!r}:{secrets.token_hex(6)}"  # unique even when the clock stands still

        async def record() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(name, {member: now})
                pipe.zremrangebyscore(name, "-inf", now - self._window)
                pipe.expire(name, self._window)
                await pipe.execute()

        try:
            await self._circuit.call(record)
        except CircuitOpen:
            await self._fallback.failed(key)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        with contextlib.suppress(CircuitOpen):
            await self._circuit.call(lambda: self._redis.delete(self._prefix + key))

    async def close(self) -> None:
        await self._circuit.close()  # idempotent: a shared circuit may be closed twice
        await self._redis.aclose()
