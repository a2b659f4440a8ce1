"""The password-hashing pool: off the event loop, bounded, at the lowest CPU priority."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

import anyio
import pytest

from latchkey.core.errors import TooManyRequests
from latchkey.services.hashing import HASH_NICE, HashingPool

pytestmark = pytest.mark.anyio

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="thread priorities: Linux")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _blocker(started: threading.Event, release: threading.Event) -> Callable[[], str]:
    def work() -> str:
        started.set()
        release.wait(30)
        return "done"

    return work


@linux_only
async def test_hash_threads_and_the_threads_they_start_run_at_the_lowest_priority() -> None:
    """Argon2 starts a thread per lane from the hash thread: those inherit the priority."""
    pool = HashingPool(workers=1)
    try:

        def nice_here_and_in_a_child() -> tuple[int, int]:
            seen: list[int] = []
            child = threading.Thread(target=lambda: seen.append(_own_nice()))
            child.start()
            child.join()
            return _own_nice(), seen[0]

        assert await pool.run(nice_here_and_in_a_child) == (HASH_NICE, HASH_NICE)
        assert _own_nice() != HASH_NICE  # the event loop's thread keeps its priority
    finally:
        pool.close()


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    pool = HashingPool(workers=1, queue=1)
    started, release = threading.Event(), threading.Event()
    results: list[str] = []
    try:
        async with anyio.create_task_group() as tasks:

            async def call() -> None:
                results.append(await pool.run(_blocker(started, release)))

            tasks.start_soon(call)  # runs
            tasks.start_soon(call)  # waits in the queue
            await anyio.to_thread.run_sync(started.wait, 30)
            while pool.pending < 2:
                await anyio.sleep(0)
            with pytest.raises(TooManyRequests) as refused:
                await pool.run(str, "third")
            assert refused.value.retry_after >= 1
            assert refused.value.status_code == 429
            release.set()
        assert results == ["done", "done"]
        assert pool.pending == 0
        assert await pool.run(str, "again") == "again"  # the slots are free again
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_waiting_call_gives_its_place_back() -> None:
    pool = HashingPool(workers=1, queue=1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pool.run, _blocker(started, release))
            await anyio.to_thread.run_sync(started.wait, 30)
            tasks.start_soon(pool.run, ran.append, "never")
            while pool.pending < 2:
                await anyio.sleep(0)
            # Both callers go away: the running call finishes, the waiting one never runs.
            tasks.cancel_scope.cancel()
        assert pool.pending == 1  # only the running call still holds a place
        release.set()
        while pool.pending:  # the running call's thread gives its place back as it ends
            await anyio.to_thread.run_sync(release.wait, 30)
        assert ran == []
        assert await pool.run(str, "next") == "next"
    finally:
        release.set()
        pool.close()
