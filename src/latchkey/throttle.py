"""Login throttling: failed attempts counted per account and per client address.

After ``limit`` failures within ``window`` seconds, further attempts on that key get 429 with
``Retry-After`` until the window of the oldest counted failure passes. Counters live in
process (:class:`LocalThrottle`) or in Redis, shared by every instance.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Protocol

from .core.clock import Clock


class Throttle(Protocol):
    async def retry_after(self, key: str, limit: int) -> int:
        """Seconds to wait before ``key`` may try again; 0 if it may try now."""
        ...

    async def failed(self, key: str) -> None: ...

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalThrottle:
    """Sliding-window failure counts in this process."""

    def __init__(self, clock: Clock, window: int) -> None:
        self._clock = clock
        self._window = window
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

    async def retry_after(self, key: str, limit: int) -> int:
        now = self._clock.now()
        with self._lock:
            stamps = self._recent(key, now)
            if len(stamps) < limit:
                return 0
            return max(1, math.ceil(stamps[-limit] + self._window - now))

    async def failed(self, key: str) -> None:
        with self._lock:
            self._failures.setdefault(key, deque()).append(self._clock.now())

    async def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    async def close(self) -> None:
        pass
