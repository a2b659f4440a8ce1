"""Login throttling: failed attempts counted per account and per client address.

Anti-automation against credential stuffing and brute force without a permanent lockout
(OWASP ASVS v5 6.3.1): nobody can lock a victim out for longer than one window.

Failures are counted per key in a sliding window of ``window`` seconds; older ones are
forgotten. With ``n`` failures in the window:

- ``n <= free`` (default 3): no delay.
- ``n > free``: the next attempt must wait ``min(2 ** (n - free - 1), max_delay)`` seconds
  after the key's LAST failure (1, 2, 4, 8, … s, at most ``max_delay``, default 60 s) and
  never longer than the window, after which that failure is forgotten.
- ``n >= limit`` (the caller's hard cap): wait until the oldest of the last ``limit``
  failures leaves the window.

:meth:`Throttle.retry_after` answers the larger of the two waits, rounded up to whole
seconds (so at least 1 when not 0); the caller answers 429 with ``Retry-After``. The wait is
computed from the counts now: failures that leave the window meanwhile can only shorten it.
:meth:`Throttle.reset` (a successful login, for the account key) forgets the key at once.
Counters live in process (:class:`LocalThrottle`) or in Redis, shared by every instance
(:class:`~latchkey.redis_backends.RedisThrottle`); both use :func:`wait_seconds`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Protocol

from .core.clock import Clock

FREE_FAILURES = 3  # failures per window that cost nothing
MAX_DELAY = 60  # seconds; the growing delay stops doubling here


class Throttle(Protocol):
    async def retry_after(self, key: str, limit: int, *, free: int | None = None) -> int:
        """Seconds to wait before ``key`` may try again; 0 if it may try now. ``free``
        overrides the instance's number of failures that cost no delay."""
        ...

    async def failed(self, key: str) -> None: ...

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


def growing_delay(count: int, *, free: int, max_delay: float) -> float:
    """The delay after the last failure that ``count`` failures in the window impose."""
    excess = count - free
    if excess <= 0:
        return 0.0
    # 2 ** (excess - 1) s: 1, 2, 4, 8, … (the exponent bounded so a float never overflows).
    return min(2.0 ** min(excess - 1, 1023), float(max_delay))


def wait_seconds(
    now: float,
    *,
    count: int,
    newest: float | None,
    limit_oldest: float | None,
    limit: int,
    window: float,
    free: int,
    max_delay: float,
) -> int:
    """Whole seconds to wait, from the counts of one key (shared by every implementation).

    ``count`` is the number of failures in the window, ``newest`` the time of the last one,
    ``limit_oldest`` the time of the ``limit``-th newest (``None`` when there are fewer).
    """
    # ASVS v5 6.3.1: growing delays, then a hard cap, both bounded by the window.
    wait = 0.0
    if newest is not None:
        delay = min(growing_delay(count, free=free, max_delay=max_delay), window)
        if delay > 0:
            wait = newest + delay - now
    if count >= limit and limit_oldest is not None:
        wait = max(wait, limit_oldest + window - now)
    if wait <= 0:
        return 0
    return max(1, math.ceil(wait))


class LocalThrottle:
    """Sliding-window failure counts in this process."""

    def __init__(
        self,
        clock: Clock,
        window: int,
        *,
        free: int = FREE_FAILURES,
        max_delay: int = MAX_DELAY,
    ) -> None:
        self._clock = clock
        self._window = window
        self._free = free
        self._max_delay = max_delay
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
        return stamps

    async def retry_after(self, key: str, limit: int, *, free: int | None = None) -> int:
        now = self._clock.now()
        with self._lock:
            stamps = self._recent(key, now)
            count = len(stamps)
            return wait_seconds(
                now,
                count=count,
                newest=stamps[-1] if stamps else None,
                limit_oldest=stamps[-limit] if 0 < limit <= count else None,
                limit=limit,
                window=self._window,
                free=self._free if free is None else free,
                max_delay=self._max_delay,
            )

    async def failed(self, key: str) -> None:
        now = self._clock.now()
        with self._lock:
            self._recent(key, now)  # forget what left the window, so memory stays bounded
            self._failures.setdefault(key, deque()).append(now)

    async def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    async def close(self) -> None:
        pass
