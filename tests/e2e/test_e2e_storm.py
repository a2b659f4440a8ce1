"""Refresh storms against real ``latchkey serve`` processes on SQLite, with client timeouts and
retries, SIGTERM and kill -9; each case ends with the count of docs/guarantees.md:
sessions lost 0, forks 0, acknowledged rotations lost 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import httpx
import pytest

from storm import ZERO, HeldBackRequest, Ledger, run_chain

pytestmark = pytest.mark.e2e

CHAINS = 8  # small: the machine has 2 cores
ROTATIONS = 6  # acknowledged rotations per chain
FIRST_TIMEOUT = 0.02  # seconds: the first attempt of every other refresh is usually lost


def serve(processes, workers: int = 1):
    data_dir = processes.workdir / "data"
    processes.migrate(data_dir)
    processes.add_user(data_dir, "alice")
    return processes.start_latchkey(data_dir, workers=workers), data_dir


async def logins(client: httpx.AsyncClient, count: int) -> list[dict]:
    body = {"username": "alice", "password": "correct horse battery staple"}
    pairs = []
    for _ in range(count):
        response = await client.post("/auth/login", json=body)
        assert response.status_code == 200, response.text
        pairs.append(response.json())
    return pairs


@pytest.mark.parametrize("workers", [1, 2])
async def test_storm_with_client_timeouts_and_retries(processes, workers: int) -> None:
    """CHAINS clients refresh ROTATIONS times each; every other first attempt times out on
    the client (the service may or may not have rotated) and is retried with the same token.
    Lost answers land in the grace path, late first attempts are refused as stragglers."""
    server, _ = serve(processes, workers)
    ledger = Ledger()
    refused: list[str] = []
    async with server.async_client() as client:
        pairs = await logins(client, CHAINS)
        await asyncio.gather(
            *(
                run_chain(
                    client,
                    n,
                    pair,
                    ledger,
                    rotations=ROTATIONS,
                    first_timeout=FIRST_TIMEOUT,
                    refused=refused,
                )
                for n, pair in enumerate(pairs)
            )
        )
        count = await ledger.count(client)
    print(f"{workers} worker(s): {ledger.attempts} attempts, {ledger.lost_answers} lost; {count}")
    assert not refused, refused
    assert all(ledger.rotations[n] == ROTATIONS for n in range(CHAINS)), ledger.rotations
    assert count == ZERO, str(count)


async def test_sigterm_answers_what_is_in_flight_and_loses_nothing(processes) -> None:
    """SIGTERM while a storm runs and a refresh is in flight (its body held back): the
    server stops taking connections, answers the request in flight, and exits 0; after a
    restart every chain goes on: 0/0/0."""
    server, data_dir = serve(processes)
    ledger = Ledger()
    stop = asyncio.Event()
    async with server.async_client() as client:
        pairs = await logins(client, CHAINS + 1)
        in_flight_pair = pairs.pop()
        chains = [
            asyncio.create_task(
                run_chain(client, n, pair, ledger, rotations=1_000, give_up=stop.is_set)
            )
            for n, pair in enumerate(pairs)
        ]
        while not all(ledger.rotations[n] for n in range(CHAINS)):
            await asyncio.sleep(0.01)
        in_flight = HeldBackRequest(server.port, in_flight_pair["refresh_token"])
        await asyncio.to_thread(server.process.send_signal, signal.SIGTERM)
        status, body = await asyncio.to_thread(in_flight.finish)
        stop.set()
        await asyncio.gather(*chains)
        code = await asyncio.to_thread(server.process.wait, 30)
    assert status == 200, body
    ledger.answered(CHAINS, in_flight_pair["refresh_token"], body)
    # Exited by itself once done: 0, or SIGTERM raised again after a clean shutdown (uvicorn
    # does so, so that a supervisor sees which signal ended it).
    assert code in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/healthz", timeout=5)

    again = processes.start_latchkey(data_dir)
    async with again.async_client() as client:
        count = await ledger.count(client)
    assert count == ZERO, str(count)


async def test_kill_9_of_the_server_mid_storm_loses_nothing(processes) -> None:
    """kill -9 of the whole server once every chain has rotated; after a restart on the same
    SQLite file, every acknowledged token still refreshes: 0/0/0."""
    server, data_dir = serve(processes)
    ledger = Ledger()
    stop = asyncio.Event()
    async with server.async_client() as client:
        pairs = await logins(client, CHAINS)
        chains = [
            asyncio.create_task(
                run_chain(client, n, pair, ledger, rotations=1_000, give_up=stop.is_set)
            )
            for n, pair in enumerate(pairs)
        ]
        while not all(ledger.rotations[n] >= 2 for n in range(CHAINS)):
            await asyncio.sleep(0.01)
        server.process.kill()
        await asyncio.to_thread(server.process.wait, 30)
        stop.set()
        await asyncio.gather(*chains)
    again = processes.start_latchkey(data_dir)
    async with again.async_client() as client:
        count = await ledger.count(client)
    print(f"kill -9: {sum(ledger.rotations.values())} rotations acknowledged; {count}")
    assert count == ZERO, str(count)


def workers_of(server) -> list[int]:
    """The worker processes of a ``--workers N`` server (the supervisor's children)."""
    found = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(pid) for pid in found]


def test_workers_option_is_passed(processes) -> None:
    """The two-worker storms here run two worker processes."""
    server, _ = serve(processes, workers=2)
    assert len(workers_of(server)) >= 2


async def test_kill_9_of_one_worker_mid_storm_loses_nothing(processes) -> None:
    """Two workers; kill -9 of one once every chain has rotated twice. The chains go on
    (a dropped request is retried with the same token) until each has rotated twice more,
    through the other worker or the one started in its place: 0/0/0."""
    server, _ = serve(processes, workers=2)
    ledger = Ledger()
    refused: list[str] = []
    async with server.async_client() as client:
        pairs = await logins(client, CHAINS)
        stop = asyncio.Event()
        chains = [
            asyncio.create_task(
                run_chain(
                    client, n, pair, ledger, rotations=1_000, give_up=stop.is_set, refused=refused
                )
            )
            for n, pair in enumerate(pairs)
        ]
        while not all(ledger.rotations[n] >= 2 for n in range(CHAINS)):
            await asyncio.sleep(0.01)
        victim = workers_of(server)[0]
        os.kill(victim, signal.SIGKILL)
        at_kill = dict(ledger.rotations)
        while not all(ledger.rotations[n] >= at_kill[n] + 2 for n in range(CHAINS)):
            assert all(not chain.done() for chain in chains), refused
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*chains)
        count = await ledger.count(client)
    assert not refused, refused
    assert count == ZERO, str(count)
