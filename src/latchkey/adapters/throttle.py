"""Failed-attempt counters for login throttling: the protocol, and the in-process counter.

The policy itself (free failures, growing delays, hard cap, all bounded by the window) is
core/throttle.py; :class:`~latchkey.adapters.redis_throttle.RedisThrottle` shares the counts
between instances.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from ..core.clock import Clock
from ..core.throttle import FREE_FAILURES, MAX_DELAY, wait_seconds


class Throttle(Protocol):
    async def retry_after(self, key: str, limit: int, *, free: int | None = None) -> int:
        """Seconds to wait before ``key`` may try again; 0 if it may try now. ``free``
        overrides the instance's number of failures that cost no delay."""
        ...

    async def failed(self, key: str) -> None: ...

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


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
