"""SqliteWriter: one writer thread per process, group commit, answers only after COMMIT."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from latchkey.core.errors import ServiceUnavailable
from latchkey.store.sqlite_writer import SqliteWriter

pytestmark = pytest.mark.anyio


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    return path


@pytest.fixture
def writer(db: str) -> Iterator[SqliteWriter]:
    writer = SqliteWriter(db, timeout=5)
    yield writer
    writer.close()


def _rows(path: str) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("SELECT k, v FROM t").fetchall())


Work = Callable[[sqlite3.Connection], object]


def _insert(key: str, value: int = 1) -> Work:
    def work(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
        return value

    return work


async def test_what_waits_is_committed_in_one_group(db: str, writer: SqliteWriter) -> None:
    """Work handed in while a group runs goes into the next group: one COMMIT for all."""
    running, release = threading.Event(), threading.Event()

    def first(connection: sqlite3.Connection) -> str:
        running.set()
        release.wait(10)
        return "first"

    results: dict[str, object] = {}

    async def call(name: str, work: Work) -> None:
        results[name] = await writer.run(work)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call, "first", first)
        await anyio.to_thread.run_sync(running.wait, 10)
        for i in range(30):
            tasks.start_soon(call, f"k{i}", _insert(f"k{i}", i))
        while writer._queue.qsize() < 30:  # all 30 handed in before the group ends
            await anyio.sleep(0)
        release.set()

    assert results == {"first": "first", **{f"k{i}": i for i in range(30)}}
    assert writer.commits == 2
    assert _rows(db) == {f"k{i}": i for i in range(30)}


async def test_a_failing_piece_rolls_back_alone(db: str, writer: SqliteWriter) -> None:
    await writer.run(_insert("taken"))
    running, release = threading.Event(), threading.Event()

    def hold(connection: sqlite3.Connection) -> None:
        running.set()
        release.wait(10)

    def half_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
        connection.execute("INSERT INTO t (k, v) VALUES ('taken', 2)")  # UNIQUE fails

    outcomes: dict[str, object] = {}

    async def call(name: str, work: Work) -> None:
        try:
            outcomes[name] = await writer.run(work)
        except sqlite3.IntegrityError as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call, "hold", hold)
        await anyio.to_thread.run_sync(running.wait, 10)
        tasks.start_soon(call, "before", _insert("before"))
        tasks.start_soon(call, "bad", half_then_fail)
        tasks.start_soon(call, "after", _insert("after"))
        while writer._queue.qsize() < 3:
            await anyio.sleep(0)
        release.set()

    assert isinstance(outcomes["bad"], sqlite3.IntegrityError)
    assert outcomes["before"] == outcomes["after"] == 1
    assert _rows(db) == {"taken": 1, "before": 1, "after": 1}  # no "half"
    assert writer.commits == 3  # "taken", the group holding "hold" and the group of three


async def test_an_answer_means_committed(db: str, writer: SqliteWriter) -> None:
    """Another connection (another process) sees the write as soon as the caller is answered."""
    for i in range(20):
        await writer.run(_insert(f"k{i}", i))
        assert _rows(db)[f"k{i}"] == i


async def test_another_process_holding_the_write_lock_is_waited_for(
    db: str, writer: SqliteWriter
) -> None:
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (k, v) VALUES ('other', 1)")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(writer.run, _insert("mine"))
            while writer._queue.qsize():  # the writer has taken it and waits for the lock
                await anyio.sleep(0)
            assert "mine" not in _rows(db)
            other.execute("COMMIT")
        assert _rows(db) == {"other": 1, "mine": 1}
    finally:
        other.close()


async def test_a_lock_held_past_the_timeout_is_a_503(db: str) -> None:
    writer = SqliteWriter(db, timeout=0.05)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(ServiceUnavailable):
            await writer.run(_insert("mine"))
        other.execute("ROLLBACK")
        assert await writer.run(_insert("later")) == 1  # the writer goes on afterwards
    finally:
        other.close()
        writer.close()


async def test_closed_writer_refuses_with_503(writer: SqliteWriter) -> None:
    writer.close()
    with pytest.raises(ServiceUnavailable):
        await writer.run(_insert("late"))


async def test_every_commit_is_synced_to_disk(db: str, writer: SqliteWriter) -> None:
    """The writer's connection is in WAL mode with synchronous=FULL: a commit is on disk
    before the writer answers, so an acknowledged write survives a power cut
    (docs/guarantees.md)."""

    def pragmas(connection: sqlite3.Connection) -> tuple[str, int]:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        return str(mode), int(connection.execute("PRAGMA synchronous").fetchone()[0])

    assert await writer.run(pragmas) == ("wal", 2)  # 2 = FULL
