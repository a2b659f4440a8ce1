"""Keys from a JWKS URL, refreshed in the background, never fetched on a request's path.

:class:`RemoteJWKS` is the key source of ``Verifier.from_jwks_url``. Its policy is
:class:`~latchkey.core.keycache.KeySetCache`; its fetches run in a runner
(:mod:`latchkey.adapters.jwks_runners`): an asyncio task when it is first used from an event
loop, one daemon thread otherwise. What a request sees:

- a token whose key id the held set knows is checked at once, even while the set is stale
  and a refresh hangs (the request only wakes the runner when a refresh is due);
- a token naming an unknown key id asks for one fetch, shared by every request waiting for it
  and at most one per ``min_refetch_interval``; a thread waits for it at most
  ``refresh_deadline`` seconds, a coroutine awaits it (``Verifier.verify_async``) as long;
- an unknown key id after a fetch that succeeded is a bad token (401); before the first
  fetch, after the set passed ``max_stale``, or while the key server fails, it is
  :class:`~latchkey.core.errors.KeySetUnavailable` (503 with ``Retry-After``).

Logged on ``latchkey.jwks``: one WARNING when an outage starts (the URL and the reason), one
INFO when it ends, one WARNING if the held keys pass ``max_stale`` during it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_threads

from ..core.clock import Clock
from ..core.errors import ConfigurationError, KeyPending, KeySetUnavailable
from ..core.keycache import KeySetCache
from ..core.keys import VerificationKey
from . import jwks_metrics
from .jwks_fetch import Fetched, FetchFailed, redact
from .jwks_runners import Flight, TaskRunner, ThreadRunner, wait_for

log = logging.getLogger("latchkey.jwks")

DEFAULT_MAX_STALE = 6 * 3600.0  # the held keys verify this long past their max-age, no longer
DEFAULT_REFRESH_DEADLINE = 1.0  # the longest a request waits for a fetch of an unknown key id
MAX_SLEEP = 30.0  # a runner looks at the clock at least this often


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RemoteJWKS:
    """A :class:`~latchkey.core.keysets.KeySource` backed by a JWKS URL; thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        min_refetch_interval: float = 5.0,
        timeout: float = 5.0,
        max_stale: float = DEFAULT_MAX_STALE,
        refresh_deadline: float = DEFAULT_REFRESH_DEADLINE,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("the JWKS URL must be http(s)")
        if not timeout > 0 or not refresh_deadline >= 0:
            raise ConfigurationError("timeout must be > 0 and refresh_deadline >= 0")
        self.url = url
        self.where = redact(url)
        self._clock = clock
        self._timeout = timeout
        self._deadline = refresh_deadline
        try:
            self._cache = KeySetCache(interval=min_refetch_interval, max_stale=max_stale)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self._lock = threading.Lock()
        self._flight: Flight | None = None  # the fetch asked for, or running
        self._runner: ThreadRunner | TaskRunner | None = None
        self._closed = False
        self._failures: Counter[str] = Counter()
        self._aged_out_logged = False  # the max_stale warning was given in this outage
        self.fetches = 0  # fetches started
        jwks_metrics.track(self)

    @property
    def timeout(self) -> float:
        return self._timeout

    # --- the request path ------------------------------------------------------------------

    def get(self, kid: str) -> VerificationKey | None:
        now = self._clock.now()
        key = self._cache.key(kid, now)
        if key is not None:
            if self._cache.refresh_due(now) and self._idle():
                self._ask(now, unknown=False)  # wakes the runner; never waits
            return key
        flight = self._ask(now, unknown=True)
        if flight is not None:
            if _running_loop() is not None:  # never block an event loop: let it await
                raise KeyPending(
                    functools.partial(wait_for, flight, self._deadline),
                    retry_after=self._cache.retry_after(now),
                )
            wait_threads([flight], timeout=self._deadline)
            now = self._clock.now()
        return self._settle(kid, now)

    def _idle(self) -> bool:
        """No fetch under way that a live runner will finish (read without the lock)."""
        runner = self._runner
        return self._flight is None or runner is None or not runner.alive()

    def _settle(self, kid: str, now: float) -> VerificationKey | None:
        """After any fetch there was time for: the key, ``None`` (a bad kid), or raise."""
        key = self._cache.key(kid, now)
        if key is not None:
            return key
        if self._flight is None and self._cache.settled_unknown(now):
            return None
        if self._cache.held is not None and not self._cache.usable(now):
            self._aged_out()
        raise KeySetUnavailable(retry_after=self._cache.retry_after(now))

    def _ask(self, now: float, *, unknown: bool, thread: bool = False) -> Flight | None:
        """The fetch this request may wait for: the one under way, a new one if allowed
        (cooldown for unknown kids, due time for refreshes), else ``None``."""
        with self._lock:
            if self._closed:
                return None
            runner = self._live_runner(thread)
            flight = self._flight
            if flight is None:
                cache = self._cache
                if not (cache.may_fetch_unknown(now) if unknown else cache.refresh_due(now)):
                    return None
                flight = self._flight = Future()
                self._cache.attempt(now)
                runner.wake()
            return flight

    def _live_runner(self, thread: bool = False) -> ThreadRunner | TaskRunner:
        """The runner, started (again) if there is none alive: a task on the running loop,
        else (or if ``thread``: the caller is going to block) a thread. Under the lock."""
        runner = self._runner
        if runner is not None and runner.alive():
            return runner
        flight = self._flight
        if flight is not None and flight.running():  # its runner died with it: let it go
            self._flight = None
            flight.set_result(None)
        loop = None if thread else _running_loop()
        self._runner = runner = ThreadRunner(self) if loop is None else TaskRunner(self, loop)
        return runner

    # --- the runner's side -----------------------------------------------------------------

    def next_flight(self) -> Flight | None:
        now = self._clock.now()
        with self._lock:
            flight = self._flight
            if flight is None and self._cache.refresh_due(now) and not self._closed:
                flight = self._flight = Future()
                self._cache.attempt(now)
            if flight is None or flight.running() or not flight.set_running_or_notify_cancel():
                return None  # nothing to do, or another runner has it
            self.fetches += 1
            return flight

    def sleep_for(self) -> float:
        wait = self._cache.next_refresh - self._clock.now()
        return min(max(wait, 0.1), MAX_SLEEP)

    def land(self, flight: Flight, outcome: Fetched | FetchFailed) -> None:
        now = self._clock.now()
        with self._lock:
            if self._flight is flight:
                self._flight = None
            if isinstance(outcome, FetchFailed):
                self._failures[outcome.kind] += 1
                had_keys = self._cache.held is not None
                started = self._cache.failed(outcome.detail, now, random.random())  # noqa: S311
            else:
                ended = self._cache.succeeded(*outcome, now)
                self._aged_out_logged = False
        if isinstance(outcome, FetchFailed):
            if started:
                log.warning(
                    "cannot fetch the key set from %s (%s); %s",
                    self.where,
                    outcome.detail,
                    "keeping the keys held" if had_keys else "tokens get 503 until it answers",
                )
        elif ended is not None:
            log.info(
                "key set from %s fetched again, after %d failed attempts over %.0f s",
                self.where,
                ended.count,
                now - ended.since,
            )
        flight.set_result(None)  # last: whoever waits sees the cache and the log updated

    def _aged_out(self) -> None:
        """Log once per outage that the held keys passed max_stale."""
        with self._lock:
            if self._aged_out_logged:
                return
            self._aged_out_logged = True
        log.warning(
            "the keys from %s are past max_stale (%g s): tokens get 503 until it answers",
            self.where,
            self._cache.max_stale,
        )

    def abandon(self, flight: Flight) -> None:
        with self._lock:
            if self._flight is flight:
                self._flight = None
        if not flight.done():
            flight.set_result(None)

    # --- warm start, shutdown, metrics -----------------------------------------------------

    def warm_up(self, timeout: float | None = None) -> bool:
        """Fetch the keys now unless they are held, waiting at most ``timeout`` seconds
        (default: the fetch timeout). Whether keys are held afterwards; never raises."""
        flight = self._warm_flight(thread=True)  # this thread blocks: fetch in another
        if flight is not None:
            wait_threads([flight], timeout=self._timeout if timeout is None else timeout)
        return self._cache.usable(self._clock.now())

    async def warm_up_async(self, timeout: float | None = None) -> bool:
        """:meth:`warm_up` on an event loop; the background refresh runs on it from then."""
        flight = self._warm_flight(thread=False)
        if flight is not None:
            await wait_for(flight, self._timeout if timeout is None else timeout)
        return self._cache.usable(self._clock.now())

    def _warm_flight(self, *, thread: bool) -> Flight | None:
        now = self._clock.now()
        if self._cache.usable(now) and not self._cache.refresh_due(now):
            with self._lock:
                self._live_runner(thread)
            return None
        return self._ask(now, unknown=True, thread=thread) or self._ask(
            now, unknown=False, thread=thread
        )

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the fetch under way, if any, at most ``timeout`` seconds; whether none
        is left. Never starts one."""
        flight = self._flight
        if flight is not None:
            wait_threads([flight], timeout=timeout)
        return self._flight is None

    def close(self) -> None:
        """Stop refreshing (idempotent); the keys held keep verifying until they age out."""
        runner = self._shut()
        if runner is not None:
            runner.stop(self._timeout)

    async def aclose(self) -> None:
        """:meth:`close` from an event loop: waits for the task to end, or the thread."""
        runner = self._shut()
        if isinstance(runner, TaskRunner):
            await runner.astop()
        elif runner is not None:
            await asyncio.to_thread(runner.stop, self._timeout)

    def _shut(self) -> ThreadRunner | TaskRunner | None:
        with self._lock:
            self._closed, runner, self._runner = True, self._runner, None
            flight = self._flight
        if flight is not None and not flight.running():  # asked for, never to run: let go
            self.abandon(flight)
        return runner

    def age(self) -> float | None:
        return self._cache.age(self._clock.now())

    def failure_counts(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._failures)
