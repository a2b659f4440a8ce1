"""Concurrent refreshes of one token against real server processes: the chain never forks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

CONCURRENCY = 20
GRACE = 1  # LATCHKEY_REFRESH_GRACE of the two-process pair, in seconds
PAST_GRACE = GRACE + 0.5
FEED_DEADLINE = 10.0  # LATCHKEY_REVOCATION_POLL_INTERVAL is 1 s; room for a loaded machine


async def wait_until(deadline: float) -> None:
    """Wait until time.monotonic() reaches ``deadline``: the servers' real clocks must move."""
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def auth(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh_all(clients: list[httpx.AsyncClient], token: str) -> list[httpx.Response]:
    """Send ``token`` CONCURRENCY times at once, round-robin over ``clients``."""
    return await asyncio.gather(
        *(
            clients[n % len(clients)].post("/auth/refresh", json={"refresh_token": token})
            for n in range(CONCURRENCY)
        )
    )


def one_successor(responses: list[httpx.Response]) -> str:
    """Every response is 200 and carries the same refresh token; return it."""
    assert [r.status_code for r in responses] == [200] * len(responses), [
        r.text for r in responses if r.status_code != 200
    ]
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1, f"the chain forked into {len(successors)} successors"
    return successors.pop()


async def test_concurrent_refreshes_on_one_process(shared_latchkey, login) -> None:
    """20 concurrent refreshes of one token: all 200 with the same successor, which rotates on."""
    server = shared_latchkey.server
    with server.client() as client:
        pair = login(client, "writer")
    original = pair["refresh_token"]

    async with server.async_client() as client:
        responses = await refresh_all([client], original)
        successor = one_successor(responses)
        assert successor != original

        me = await client.get("/auth/me", headers=auth(responses[-1].json()))
        assert me.status_code == 200
        assert me.json()["username"] == "writer"

        following = await client.post("/auth/refresh", json={"refresh_token": successor})
        assert following.status_code == 200
        head = following.json()["refresh_token"]
        assert head not in (original, successor)
        onward = await client.post("/auth/refresh", json={"refresh_token": head})
        assert onward.status_code == 200
        assert onward.json()["refresh_token"] not in (original, successor, head)


async def test_two_processes_share_one_chain(processes, login) -> None:
    """Two servers on one data dir: concurrent refreshes split across both agree on one
    successor, and a replay after the grace window kills the newest token on both."""
    data_dir = processes.workdir / "data"
    migrated = processes.cli(data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    processes.add_user(data_dir, "alice")
    grace = {"LATCHKEY_REFRESH_GRACE": str(GRACE)}
    first = processes.start_latchkey(data_dir, wait=False, **grace)
    # One deployment behind a load balancer: both instances share the issuer name.
    second = processes.start_latchkey(data_dir, issuer_port=first.port, wait=False, **grace)
    processes.wait_ready(first, "/healthz")
    processes.wait_ready(second, "/healthz")

    with first.client() as a, second.client() as b:
        assert a.get("/.well-known/jwks.json").json() == b.get("/.well-known/jwks.json").json()
        pair = login(b, "alice")
        assert a.get("/auth/me", headers=auth(pair)).status_code == 200
    original = pair["refresh_token"]

    async with first.async_client() as a, second.async_client() as b:
        # Warm both processes up (connections, database pool) so that the 20 refreshes below
        # start close together, well inside the 1 s grace window.
        warm = await asyncio.gather(
            *(c.get("/auth/me", headers=auth(pair)) for c in [a, b] * (CONCURRENCY // 2))
        )
        assert all(r.status_code == 200 for r in warm)
        responses = await refresh_all([a, b], original)
        rotated_by = time.monotonic()
        successor = one_successor(responses)
        assert successor != original
        newest = auth(responses[0].json())
        for client in (a, b):
            assert (await client.get("/auth/me", headers=newest)).status_code == 200

        await wait_until(rotated_by + PAST_GRACE)
        replay = await b.post("/auth/refresh", json={"refresh_token": original})
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_grant"
        revoked_by = time.monotonic()
        # The process that revoked refuses the session's access tokens at once.
        assert (await b.get("/auth/me", headers=newest)).status_code == 401
        for client in (a, b):  # every refresh reads the session row: refused everywhere
            dead = await client.post("/auth/refresh", json={"refresh_token": successor})
            assert dead.status_code == 401
            assert dead.json()["error"] == "invalid_grant"
        # The other learns it from the revocation feed, within its poll interval (1 s).
        while (status := (await a.get("/auth/me", headers=newest)).status_code) == 200:
            assert time.monotonic() < revoked_by + FEED_DEADLINE, "no revocation from the feed"
            await asyncio.sleep(0.05)
        assert status == 401
