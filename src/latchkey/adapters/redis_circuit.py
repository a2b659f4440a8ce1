"""A circuit breaker in front of Redis: a hung Redis costs one timeout per outage, paid in the
background, never by a request (docs/design.md §6).

Every Redis call on a request's path (the login throttle, the announcement of a revocation)
goes through :meth:`Circuit.call`. The circuit is in one of three states:

- **closed**: the call goes to Redis. The request waits for it at most ``wait`` seconds; a
  call slower than that goes on in the background (bounded by ``timeout``) while the request
  goes on without it (:class:`CircuitOpen`: the caller uses its in-process fallback);
- **doubtful**, while such a slow call is still out: calls skip Redis at once. If the slow
  call answers within ``timeout``, the circuit is closed again (Redis was only slow);
- **open**, after a call timed out or failed: calls skip Redis at once, and a background task
  asks Redis (``probe``, bounded by ``timeout``) every ``probe_interval`` seconds, closing the
  circuit at the first answer; then the ``on_close`` callbacks run.

So when Redis hangs, requests wait at most ``wait`` once (those already waiting when it
hung), and the one ``timeout`` per outage is spent by a call nobody waits for.

Logged on ``latchkey.redis``: one WARNING when the circuit opens (where, and why), one INFO
when it closes (after how long). The URL is given redacted; no key, session id or throttle
key is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .redis_common import FAILURES, connect, describe, logger, redact_url

T = TypeVar("T")


class CircuitOpen(Exception):
    """Redis is not being asked now, or did not answer in time: use the in-process fallback."""


class Circuit:
    """Closed, doubtful, open: see the module docstring. One per Redis URL per process."""

    def __init__(
        self,
        where: str,
        probe: Callable[[], Awaitable[object]],
        *,
        timeout: float,
        wait: float | None = None,
        probe_interval: float = 1.0,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.where = where
        self.timeout = timeout
        self.wait = timeout if wait is None else min(wait, timeout)
        self._probe = probe
        self._interval = probe_interval
        self._closing = closing
        self._opened_at: float | None = None  # monotonic time, while open
        self._slow: set[asyncio.Task[Any]] = set()  # calls out longer than ``wait``
        self._prober: asyncio.Task[None] | None = None
        self._on_close: list[Callable[[], Awaitable[None]]] = []
        self.trips = 0  # how many times it opened

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def skipping(self) -> bool:
        """Whether calls skip Redis now (open, or doubtful)."""
        return self._opened_at is not None or bool(self._slow)

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` each time the circuit closes again (failures are logged)."""
        self._on_close.append(callback)

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Redis's answer to ``await work()``; :class:`CircuitOpen` when the circuit skips
        Redis, or when Redis failed, or did not answer within ``wait`` (the call then goes on
        in the background and opens the circuit if it fails)."""
        if self.skipping:
            raise CircuitOpen()
        attempt: asyncio.Task[T] = asyncio.ensure_future(self._attempt(work))
        attempt.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({attempt}, timeout=self.wait)
        if done:
            return attempt.result()
        self._slow.add(attempt)
        attempt.add_done_callback(self._slow.discard)
        raise CircuitOpen()

    async def _attempt(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await work()
        except FAILURES as exc:
            self.trip(exc)
            raise CircuitOpen() from exc

    def trip(self, exc: BaseException) -> None:
        """Open the circuit (if it is not open) and start probing in the background."""
        if self._opened_at is not None:
            return
        self._opened_at = time.monotonic()
        self.trips += 1
        logger.warning(
            "Redis at %s did not answer (%s): working in process until it does",
            self.where,
            describe(exc),
        )
        self._prober = asyncio.get_running_loop().create_task(
            self._probe_until_answered(), name="latchkey-redis-probe"
        )

    async def _probe_until_answered(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                async with asyncio.timeout(self.timeout):
                    await self._probe()
            except FAILURES:
                continue
            break
        opened, self._opened_at = self._opened_at, None
        logger.info(
            "Redis at %s answers again, after %.1f s",
            self.where,
            time.monotonic() - (opened or time.monotonic()),
        )
        for callback in self._on_close:
            try:
                await callback()
            except Exception:
                logger.exception("after Redis at %s came back", self.where)

    async def close(self) -> None:
        """Stop probing and close the probe's connection (idempotent)."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        closing, self._closing = self._closing, None
        if closing is not None:
            await closing()


def circuit_for(url: str, *, timeout: float, wait: float | None = None) -> Circuit:
    """A circuit for the Redis at ``url``, probing it with PING on a connection of its own."""
    client = connect(url, timeout, retries=0)
    return Circuit(redact_url(url), client.ping, timeout=timeout, wait=wait, closing=client.aclose)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished call's failure as seen (it was handled, or nobody waits for it)."""
    if not task.cancelled():
        task.exception()
