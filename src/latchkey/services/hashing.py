"""Password hashing off the event loop, bounded, at a lower CPU priority.

Argon2id is meant to be expensive: one verify at the default parameters takes a quarter of a
second of CPU. Run on as many threads as there are cores at normal priority, a burst of logins
would take every core from the event loop and stall every other request of the process. So:

- at most ``workers`` hashes run at once (default: one per core), and at most ``queue`` more
  wait; a login beyond that is refused at once with :class:`TooManyRequests` and a
  ``Retry-After`` estimated from the recent hash time, rather than waiting until it times out;
- the hash threads run at the lowest CPU priority (``nice`` 19, Linux: the priority of one
  thread, which the threads Argon2 starts for its lanes inherit), so the kernel gives the
  event loop its core whenever it has work, and the hashes use what is left.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..core.errors import TooManyRequests

__all__ = ["HASH_NICE", "HashingPool"]

T = TypeVar("T")
HASH_NICE = 19  # the lowest priority: the event loop preempts the hash threads
log = logging.getLogger("latchkey.services")


def _lower_priority() -> None:
    """Run in each hash thread as it starts: raise its nice value (needs no privilege)."""
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS means the whole process
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)
    except OSError as exc:  # a sandbox that forbids it: hashing still works
        log.warning("could not lower the priority of a hash thread: %s", exc)


class HashingPool:
    """Runs CPU-bound hashing calls on a few low-priority threads, with a bounded queue."""

    def __init__(self, workers: int | None = None, queue: int = 32) -> None:
        self.workers = workers or os.cpu_count() or 2
        self.queue = queue
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers,
            thread_name_prefix="latchkey-hash",
            initializer=_lower_priority,
        )
        self._lock = threading.Lock()
        self._pending = 0  # running or waiting; decremented by the call's own thread
        self._seconds = 0.25  # moving average of one call's wall time, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    def _retry_after(self) -> int:
        """Seconds until the queue has drained enough to take a new call, rounded up."""
        return max(1, math.ceil(self._pending / self.workers * self._seconds))

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` on a hash thread; :class:`TooManyRequests` when the queue is full."""
        with self._lock:
            if self._pending >= self.workers + self.queue:
                raise TooManyRequests(
                    "Too many sign-ins at once. Try again later.", retry_after=self._retry_after()
                )
            self._pending += 1
        future: Future[T] = self._executor.submit(self._timed, func, *args)
        future.add_done_callback(self._done)  # also when cancelled before it ran
        return await asyncio.wrap_future(future)

    def _timed(self, func: Callable[..., T], *args: object) -> T:
        started = time.perf_counter()
        try:
            return func(*args)
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)

    def _done(self, _future: Future[T]) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
