"""The Redis circuit breaker against a real redis-server that a test hangs (SIGSTOP), kills
and brings back: a request waits at most ``wait``, the one ``timeout`` per outage is paid in
the background, and a background probe closes the circuit when Redis answers again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis_helpers import ThrowawayRedis, eventually

from latchkey.adapters.redis_circuit import Circuit, CircuitOpen

WAIT = 0.05
PROBE_EVERY = 0.05


@pytest.fixture
async def client(throwaway_redis: ThrowawayRedis) -> AsyncIterator[Redis]:
    redis = Redis.from_url(throwaway_redis.url, socket_timeout=5, socket_connect_timeout=5)
    yield redis
    await redis.aclose()


@pytest.fixture
async def make_circuit(client: Redis) -> AsyncIterator[Callable[..., Circuit]]:
    """``make_circuit(timeout, wait=timeout)``; a long ``wait`` where Redis is up, so that a
    busy machine is not taken for a slow Redis."""
    made: list[Circuit] = []

    def make(timeout: float, wait: float | None = None) -> Circuit:
        made.append(
            Circuit(
                "redis://127.0.0.1/0",
                client.ping,
                timeout=timeout,
                wait=wait,
                probe_interval=PROBE_EVERY,
            )
        )
        return made[-1]

    yield make
    for circuit in made:
        await circuit.close()


async def reaches_redis(circuit: Circuit, work: Callable[[], Awaitable[object]]) -> object:
    """The answer of the first call that reaches Redis (a busy machine may make the first
    ones slower than ``wait``: those go on in the background, and Redis answers them)."""
    for _ in range(100):
        try:
            return await circuit.call(work)
        except CircuitOpen:
            await asyncio.sleep(0.05)
    raise AssertionError("no call reached Redis")


def counting(client: Redis) -> tuple[Callable[[], Awaitable[object]], list[int]]:
    """A Redis call that counts how often it was really attempted."""
    attempts: list[int] = []

    async def work() -> object:
        attempts.append(1)
        return await client.echo(f"call {len(attempts)}")

    return work, attempts


async def test_closed_calls_go_to_redis(make_circuit, client: Redis) -> None:
    """While Redis answers, every call reaches it and returns its answer."""
    circuit = make_circuit(5)
    work, attempts = counting(client)
    assert [await circuit.call(work) for _ in range(3)] == [b"call 1", b"call 2", b"call 3"]
    assert len(attempts) == 3
    assert not circuit.skipping


async def test_a_hung_redis_costs_requests_one_short_wait(
    make_circuit, client: Redis, throwaway_redis: ThrowawayRedis, caplog
) -> None:
    """Redis hangs: the call that meets it gives up after ``wait`` (Redis still hung) and
    goes on in the background; the next 100 calls never reach Redis; the background call's
    timeout opens the circuit; once Redis answers the probe closes it and the on_close
    callbacks run once. One WARNING, one INFO."""
    circuit = make_circuit(0.3, WAIT)
    work, attempts = counting(client)
    closed_again: list[bool] = []

    async def on_close() -> None:
        closed_again.append(circuit.is_open)

    circuit.on_close(on_close)
    throwaway_redis.pause()
    try:
        with caplog.at_level(logging.INFO, logger="latchkey.redis"):
            with pytest.raises(CircuitOpen):
                await circuit.call(work)
            assert circuit.skipping
            for _ in range(100):
                with pytest.raises(CircuitOpen):
                    await circuit.call(work)
            assert len(attempts) == 1  # only the call that met the hang was sent
            assert await eventually(lambda: circuit.is_open, within=10)
    finally:
        throwaway_redis.resume()
    with caplog.at_level(logging.INFO, logger="latchkey.redis"):
        assert await eventually(lambda: not circuit.skipping, within=10)
    assert closed_again == [False]
    assert (await reaches_redis(circuit, work)).startswith(b"call ")  # type: ignore[attr-defined]
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "latchkey.redis"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert "redis://127.0.0.1/0" in lines[0][1]
    assert circuit.trips == 1


async def test_a_slow_answer_does_not_open_the_circuit(
    make_circuit, client: Redis, throwaway_redis: ThrowawayRedis
) -> None:
    """A call slower than ``wait`` but within ``timeout`` leaves the request to its fallback,
    and the circuit closed: Redis was slow, not down."""
    circuit = make_circuit(30, WAIT)
    work, _ = counting(client)
    throwaway_redis.pause()
    try:
        with pytest.raises(CircuitOpen):
            await circuit.call(work)
        assert circuit.skipping and not circuit.is_open
    finally:
        throwaway_redis.resume()
    assert await eventually(lambda: not circuit.skipping, within=10)
    assert circuit.trips == 0
    assert (await reaches_redis(circuit, work)).startswith(b"call ")  # type: ignore[attr-defined]


async def test_a_killed_redis_opens_and_a_restarted_one_closes(
    make_circuit, client: Redis, throwaway_redis: ThrowawayRedis
) -> None:
    """Connections refused open the circuit at once; a restarted Redis closes it."""
    circuit = make_circuit(5)
    work, attempts = counting(client)
    throwaway_redis.stop()
    with pytest.raises(CircuitOpen):
        await circuit.call(work)
    assert await eventually(lambda: circuit.is_open, within=10)
    with pytest.raises(CircuitOpen):
        await circuit.call(work)
    assert len(attempts) == 1
    throwaway_redis.start()
    assert await eventually(lambda: not circuit.skipping, within=10)
    assert await circuit.call(work) == b"call 2"
