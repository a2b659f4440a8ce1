"""A circuit breaker in front of Redis: a hung Redis costs one timeout per outage, not one per
call (docs/design.md §6).

Every call on a request's path (the login throttle, the announcement of a revocation) goes
through :meth:`Circuit.call`, bounded by ``timeout``. While the circuit is *closed* the call
goes to Redis; the first call that times out or cannot connect *opens* it. While it is open,
calls do not touch Redis at all: :class:`CircuitOpen` is raised at once and the caller uses its
in-process fallback (local counts, a pending revocation). A background task asks Redis
``probe`` every ``probe_interval`` seconds (each bounded by ``timeout``) and closes the circuit
at the first answer; then the ``on_close`` callbacks run (e.g. to announce what waited).

Logged on ``latchkey.redis``: one WARNING when the circuit opens (where, and why), one INFO
when it closes (after how long). The URL is given redacted; no key, session id or throttle
key is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

logger = logging.getLogger("latchkey.redis")

T = TypeVar("T")
FAILURES = (RedisError, OSError)  # OSError covers TimeoutError from asyncio.timeout


class CircuitOpen(Exception):
    """Redis is not being asked now: use the in-process fallback."""


class Circuit:
    """Closed, open, probing: see the module docstring. One per Redis URL per process."""

    def __init__(
        self,
        where: str,
        probe: Callable[[], Awaitable[object]],
        *,
        timeout: float,
        probe_interval: float = 1.0,
    ) -> None:
        self.where = where
        self.timeout = timeout
        self._probe = probe
        self._interval = probe_interval
        self._opened_at: float | None = None  # monotonic time, while open
        self._prober: asyncio.Task[None] | None = None
        self._on_close: list[Callable[[], Awaitable[None]]] = []
        self.trips = 0  # how many times it opened

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` each time the circuit closes again (failures are logged)."""
        self._on_close.append(callback)

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` within ``timeout`` if the circuit is closed; else, or if it fails,
        raise :class:`CircuitOpen` (the circuit is then open)."""
        if self._opened_at is not None:
            raise CircuitOpen()
        try:
            async with asyncio.timeout(self.timeout):
                return await work()
        except FAILURES as exc:
            self.trip(exc)
            raise CircuitOpen() from exc

    def trip(self, exc: BaseException) -> None:
        """Open the circuit (if closed) and start probing in the background."""
        if self._opened_at is not None:
            return
        self._opened_at = time.monotonic()
        self.trips += 1
        logger.warning(
            "Redis at %s did not answer (%s): working in process until it does",
            self.where,
            _describe(exc),
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
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
