"""Where a remote key set's fetches run: one asyncio task, or one thread. Never a request.

A runner loops: take the fetch asked for (or due), run it, hand the result back; otherwise
sleep until the next refresh is due or someone wakes it. An async application gets a task
on its event loop (fetched with ``httpx.AsyncClient``); a WSGI application, or any caller
without a running loop, gets one daemon thread (``httpx.Client``). Either way a request
thread or the event loop never waits on the network for a key it already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Protocol

import httpx

from .jwks_fetch import (
    CONNECTION,
    Fetched,
    FetchFailed,
    afetch,
    fetch,
    new_async_client,
    new_client,
)

Flight = Future[None]  # one fetch: done when its result is in the cache


class Owner(Protocol):
    """The key source a runner fetches for."""

    url: str

    @property
    def timeout(self) -> float: ...

    def next_flight(self) -> Flight | None:
        """The fetch to run now (marked running), or ``None``."""
        ...

    def sleep_for(self) -> float:
        """Seconds until a background refresh is due."""
        ...

    def land(self, flight: Flight, outcome: Fetched | FetchFailed) -> None:
        """Store a fetch's outcome and wake whoever waits for ``flight``."""
        ...

    def abandon(self, flight: Flight) -> None:
        """Wake whoever waits for ``flight``, which will not run to its end."""
        ...


class ThreadRunner:
    """Fetches in one daemon thread of its own."""

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="latchkey-jwks", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        with new_client(self._owner.timeout) as client:
            while not self._stopped:
                self._wake.clear()  # before looking for work: a wake after the look counts
                flight = self._owner.next_flight()
                if flight is None:
                    self._wake.wait(self._owner.sleep_for())
                    continue
                _run_sync(self._owner, flight, client)


class TaskRunner:
    """Fetches in one task on the event loop it was started on."""

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="latchkey-jwks")

    def alive(self) -> bool:
        return not self._task.done() and self._loop.is_running()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._task.cancel)

    async def astop(self) -> None:
        self._task.cancel()
        if asyncio.get_running_loop() is self._loop:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with new_async_client(self._owner.timeout) as client:
            while True:
                self._wake.clear()
                flight = self._owner.next_flight()
                if flight is None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._owner.sleep_for()):
                            await self._wake.wait()
                    continue
                try:
                    outcome: Fetched | FetchFailed = await afetch(
                        client, self._owner.url, self._owner.timeout
                    )
                except FetchFailed as failure:
                    outcome = failure
                except asyncio.CancelledError:
                    self._owner.abandon(flight)  # stopping: wake the waiters, record nothing
                    raise
                except Exception as exc:  # a bug must not end the refresh: count it, go on
                    outcome = FetchFailed(CONNECTION, type(exc).__name__)
                self._owner.land(flight, outcome)


def _run_sync(owner: Owner, flight: Flight, client: httpx.Client) -> None:
    try:
        outcome: Fetched | FetchFailed = fetch(client, owner.url, owner.timeout)
    except FetchFailed as failure:
        outcome = failure
    except Exception as exc:  # a bug must not end the refresh thread
        outcome = FetchFailed(CONNECTION, type(exc).__name__)
    owner.land(flight, outcome)


async def wait_for(flight: Flight, deadline: float) -> None:
    """Wait for ``flight`` on the running loop, at most ``deadline`` seconds; never raises
    and never cancels the fetch (other requests may be waiting for it too)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def on_done(_: Flight) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle)

    flight.add_done_callback(on_done)
    await asyncio.wait({done}, timeout=deadline)
