"""SQLite writes through one thread per process, committed in groups.

SQLite has one writer at a time. When every request opens its own transaction on its own
connection, concurrent writers in one process wait for each other inside SQLite's busy
handler, which sleeps (1, 2, 5 … 100 ms) instead of queueing: a burst of refreshes then
takes seconds at its tail. Here each process has one writer thread with its own connection.
Requests hand it their work and await the answer; the thread takes everything that is waiting
(up to ``max_batch``), runs it in ONE transaction — each piece of work inside its own
SAVEPOINT, so that one failure rolls back only that piece — and COMMITs once for the group
(group commit). Each caller is answered only after that COMMIT has returned, so with
``synchronous=FULL`` in WAL mode an acknowledged write survives ``kill -9`` and a power cut
alike. The event loop never waits on the database: it is woken with the answer.

Other processes (workers, the CLI) write to the same file: the writer takes the write lock
with ``BEGIN IMMEDIATE`` and, while another process holds it, retries after short sleeps
(0.2 ms doubling to 5 ms) on its own thread, until ``timeout``; then the group fails with
:class:`ServiceUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.errors import ServiceUnavailable

__all__ = ["SqliteWriter", "configure_connection"]

T = TypeVar("T")
log = logging.getLogger("latchkey.store")


def configure_connection(connection: sqlite3.Connection) -> None:
    """WAL: readers never block the writer; FULL: an acknowledged commit survives a power cut
    too (each commit syncs the WAL)."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Callable[[sqlite3.Connection], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # its caller went away; what was written stays written
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWriter:
    """One writer thread and connection for a SQLite file; :meth:`run` from the event loop."""

    def __init__(self, path: str, *, timeout: float = 15.0, max_batch: int = 64) -> None:
        self.path = path
        self.timeout = timeout
        self.max_batch = max_batch
        self.commits = 0  # transactions committed (a group counts once)
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve, name="latchkey-sqlite-writer", daemon=True
        )
        self._closed = False
        self._thread.start()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` inside the next group's transaction; its return value once
        that transaction has committed. An exception from ``work`` rolls back only its own
        writes and is raised here."""
        if self._closed:
            raise ServiceUnavailable()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, loop, future))
        return await future

    def close(self) -> None:
        """Finish what was handed in, then stop the thread. (The thread is a daemon: a process
        that exits without this loses only groups that were never acknowledged.)"""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    # --- the writer thread ---------------------------------------------------------------

    def _serve(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        self._queue.put(None)  # stop after this group
                        break
                    batch.append(job)
                if connection is None:
                    connection = self._connect(batch)
                if connection is not None:
                    self._group(connection, batch)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self, batch: list[_Job[Any]]) -> sqlite3.Connection | None:
        """The writer's connection, or ``None`` with the batch answered 503 (tried again with
        the next batch)."""
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout
            )
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                configure_connection(connection)
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA busy_timeout=0")  # waits are ours: _begin
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return None
        return connection

    def _fail(self, jobs: list[_Job[Any]], exc: BaseException) -> None:
        log.warning("database unavailable: %s", type(exc).__name__)
        failure = ServiceUnavailable()
        failure.__cause__ = exc
        for job in jobs:
            job.loop.call_soon_threadsafe(_settle, job.future, None, failure)

    def _group(self, connection: sqlite3.Connection, batch: list[_Job[Any]]) -> None:
        jobs = [job for job in batch if not job.future.cancelled()]  # nothing to answer
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            self._begin(connection)
            for job in jobs:
                connection.execute("SAVEPOINT job")
                try:
                    result = job.work(connection)
                except Exception as exc:
                    connection.execute("ROLLBACK TO job")
                    outcomes.append((None, exc))
                else:
                    outcomes.append((result, None))
                finally:
                    connection.execute("RELEASE job")
            connection.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            self._fail(jobs, exc)
            return
        for job, (result, error) in zip(jobs, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)

    def _begin(self, connection: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's write to end, up to timeout."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0002
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
