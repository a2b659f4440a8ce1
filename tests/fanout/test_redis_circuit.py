"""The Redis circuit breaker against a real redis-server that a test hangs (SIGSTOP), kills
and brings back: one timeout per outage, then in-process until a background probe answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis_helpers import ThrowawayRedis, eventually

from latchkey.adapters.redis_circuit import Circuit, CircuitOpen

TIMEOUT = 0.2
PROBE_EVERY = 0.05


@pytest.fixture
async def client(throwaway_redis: ThrowawayRedis) -> AsyncIterator[Redis]:
    redis = Redis.from_url(
        throwaway_redis.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    yield redis
    await redis.aclose()


@pytest.fixture
async def circuit(client: Redis) -> AsyncIterator[Circuit]:
    breaker = Circuit(
        "redis://127.0.0.1/0", client.ping, timeout=TIMEOUT, probe_interval=PROBE_EVERY
    )
    yield breaker
    await breaker.close()


def counting(client: Redis) -> tuple[Callable[[], object], list[int]]:
    """A Redis call that counts how often it was really attempted."""
    attempts: list[int] = []

    async def work() -> object:
        attempts.append(1)
        return await client.echo(f"call {len(attempts)}")

    return work, attempts


async def test_closed_calls_go_to_redis(circuit: Circuit, client: Redis) -> None:
    """While Redis answers, every call reaches it and returns its answer."""
    work, attempts = counting(client)
    assert [await circuit.call(work) for _ in range(3)] == [b"call 1", b"call 2", b"call 3"]
    assert len(attempts) == 3
    assert not circuit.is_open


async def test_a_hung_redis_costs_one_timeout_per_outage(
    circuit: Circuit, client: Redis, throwaway_redis: ThrowawayRedis, caplog
) -> None:
    """Redis hangs: the first call waits out its timeout and opens the circuit; the next 100
    calls never reach Redis; once Redis answers again, the probe closes the circuit, the
    on_close callbacks run once, and calls reach Redis again. One WARNING, one INFO."""
    work, attempts = counting(client)
    await circuit.call(work)
    reopened: list[bool] = []

    async def on_close() -> None:
        reopened.append(circuit.is_open)

    circuit.on_close(on_close)
    throwaway_redis.pause()
    try:
        with caplog.at_level(logging.INFO, logger="latchkey.redis"):
            with pytest.raises(CircuitOpen):
                await circuit.call(work)
            assert circuit.is_open
            for _ in range(100):
                with pytest.raises(CircuitOpen):
                    await circuit.call(work)
            assert len(attempts) == 2  # only the call that met the hang waited for it
    finally:
        throwaway_redis.resume()
    with caplog.at_level(logging.INFO, logger="latchkey.redis"):
        assert await eventually(lambda: not circuit.is_open, within=10)
    assert reopened == [False]
    assert await circuit.call(work) == b"call 3"
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "latchkey.redis"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert "redis://127.0.0.1/0" in lines[0][1]
    assert circuit.trips == 1


async def test_a_killed_redis_opens_and_a_restarted_one_closes(
    circuit: Circuit, client: Redis, throwaway_redis: ThrowawayRedis
) -> None:
    """Connections refused open the circuit at once; a restarted Redis (empty) closes it."""
    work, attempts = counting(client)
    throwaway_redis.stop()
    with pytest.raises(CircuitOpen):
        await circuit.call(work)
    with pytest.raises(CircuitOpen):
        await circuit.call(work)
    assert len(attempts) == 1
    throwaway_redis.start()
    assert await eventually(lambda: not circuit.is_open, within=10)
    assert await circuit.call(work) == b"call 2"
