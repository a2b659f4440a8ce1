"""Two ``latchkey serve`` processes sharing one PostgreSQL and one Redis (issue 3 §4).

The instances run on different loopback ports with their own data directories; they share
only the database URL, ``LATCHKEY_SECRET_KEY``, the issuer and the Redis URL — as N
instances behind a load balancer do. One cluster (the ``two_instances`` fixture) serves
the three tests of this module.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from cluster_support import Instance, TwoInstances, alogin, bearer, check_logout_reaches, refresh

from latchkey.adapters.keyfiles import parse_secret
from latchkey.bootstrap import build
from latchkey.core.keyring import StoredKey
from latchkey.core.keys import SigningKey
from latchkey.core.sealing import Sealer
from storm import ZERO, HeldBackRequest, Ledger, run_chain

pytestmark = pytest.mark.e2e

GRACE = TwoInstances.GRACE
KEY_REFRESH_INTERVAL = TwoInstances.KEY_REFRESH_INTERVAL
CONCURRENCY = 50
FANOUT_BOUND = 1.0  # a logout must reach the other instance within this many seconds
POLL = 0.05  # seconds between two polls


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


async def test_concurrent_refreshes_across_two_instances_never_fork(
    two_instances: TwoInstances,
) -> None:
    """50 concurrent refreshes of one token split over two instances all get one successor,
    which rotates once, and whose replay after the grace window kills the session."""
    async with two_instances.a.async_client() as a, two_instances.b.async_client() as b:
        pair = await alogin(a, "alice")
        original = pair["refresh_token"]
        # Warm both instances (connections, pools) so the refreshes start close together.
        warm = await asyncio.gather(*(c.get("/auth/me", headers=bearer(pair)) for c in [a, b] * 5))
        assert statuses(warm) == [200] * 10

        responses = await asyncio.gather(
            *(refresh((a, b)[n % 2], original) for n in range(CONCURRENCY))
        )
        assert statuses(responses) == [200] * CONCURRENCY, [r.text for r in responses]
        successors = {r.json()["refresh_token"] for r in responses}
        assert len(successors) == 1, f"the chain forked into {len(successors)} successors"
        successor = successors.pop()
        assert successor != original
        for client in (a, b):
            me = await client.get("/auth/me", headers=bearer(responses[0].json()))
            assert me.status_code == 200
            assert me.json()["username"] == "alice"

        # The successor rotates exactly once: a retry of it within the window gets the same
        # next token from either instance, never a second one.
        following = await refresh(a, successor)
        rotated_at = time.monotonic()
        assert following.status_code == 200, following.text
        head = following.json()["refresh_token"]
        assert head not in (original, successor)
        retried = await refresh(b, successor)
        assert retried.status_code == 200, retried.text
        assert retried.json()["refresh_token"] == head

        # After the window the same replay is theft: the whole session dies on both.
        while time.monotonic() < rotated_at + GRACE + 0.5:
            await asyncio.sleep(0.1)
        replay = await refresh(b, successor)
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_grant"
        for client in (a, b):
            dead = await refresh(client, head)
            assert dead.status_code == 401, dead.text
            me = await client.get("/auth/me", headers=bearer(following.json()))
            assert me.status_code == 401


async def test_logout_on_one_instance_reaches_the_other_within_a_second(
    two_instances: TwoInstances,
) -> None:
    """After a logout on A, B refuses the access token within 1 s: on /auth/me and in its
    in-memory guard (fed by the Redis fan-out)."""
    async with two_instances.a.async_client() as a, two_instances.b.async_client() as b:
        await check_logout_reaches(a, b, "alice", FANOUT_BOUND)


async def test_instances_share_keys_and_pick_up_a_new_one(
    two_instances: TwoInstances, tmp_path: Path
) -> None:
    """Both instances publish the same JWKS, verify each other's tokens, and serve a key
    added to the database while they run within the key refresh interval."""
    async with two_instances.a.async_client() as a, two_instances.b.async_client() as b:
        jwks_a = (await a.get("/.well-known/jwks.json")).json()
        jwks_b = (await b.get("/.well-known/jwks.json")).json()
        assert jwks_a == jwks_b
        assert len(jwks_a["keys"]) == 1  # one first key, however many instances started
        stored = two_instances.postgres.sql("SELECT kid FROM signing_keys")
        assert [row[0] for row in stored] == [jwks_a["keys"][0]["kid"]]

        pair = await alogin(a, "alice")
        me = await b.get("/auth/me", headers=bearer(pair))
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"

        # Add a key with latchkey's own code, as `latchkey keys …` or another instance would.
        settings = two_instances.cluster.settings(tmp_path / "in-process")
        services = build(settings)
        try:
            await services.migrate()
            sealer = Sealer(parse_secret(two_instances.cluster.secret))
            new = SigningKey.generate("ES256")
            now = time.time()
            await services.store.add_signing_key(
                StoredKey.seal(new, sealer, now=now, activates_at=now + 3600)
            )
        finally:
            await services.close()
        added_at = time.monotonic()

        bound = KEY_REFRESH_INTERVAL + 2.0
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - added_at < bound:
            for name, client in (("A", a), ("B", b)):
                kids = {
                    k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]
                }
                if new.kid in kids and name not in seen:
                    seen[name] = time.monotonic() - added_at
            await asyncio.sleep(POLL)
        assert set(seen) == {"A", "B"}, f"new key served within {bound} s only by {seen}"

        final_a = (await a.get("/.well-known/jwks.json")).json()
        final_b = (await b.get("/.well-known/jwks.json")).json()
        assert final_a == final_b
        assert {k["kid"] for k in final_a["keys"]} == {jwks_a["keys"][0]["kid"], new.kid}
        # Published ahead of time, not yet signing: tokens still verify on both instances.
        fresh = await alogin(b, "alice")
        for client in (a, b):
            assert (await client.get("/auth/me", headers=bearer(fresh))).status_code == 200


def port_of(instance: Instance) -> int:
    return int(instance.base_url.rsplit(":", 1)[1])


async def test_delayed_duplicate_across_two_instances_ends_nothing(
    two_instances: TwoInstances,
) -> None:
    """T0's first request to A is held back; its retry on B rotates T0 → T1, A rotates T1 →
    T2; then the first request completes on A: refused, and sessions lost 0, forks 0,
    acknowledged rotations lost 0 (docs/guarantees.md)."""
    ledger = Ledger()
    async with two_instances.a.async_client() as a, two_instances.b.async_client() as b:
        pair = await alogin(a, "alice")
        ledger.acknowledged[0] = pair
        straggler = HeldBackRequest(port_of(two_instances.a), pair["refresh_token"])
        try:
            for client in (b, a):
                token = ledger.acknowledged[0]["refresh_token"]
                response = await refresh(client, token)
                assert response.status_code == 200, response.text
                ledger.answered(0, token, response.json())
        finally:
            status, body = await asyncio.to_thread(straggler.finish)
        assert (status, body["error"]) == (401, "invalid_grant"), body
        for client in (a, b):
            me = await client.get("/auth/me", headers=bearer(ledger.acknowledged[0]))
            assert me.status_code == 200, me.text
        count = await ledger.count(b)
    assert count == ZERO, str(count)


async def test_storm_with_timeouts_across_two_instances(two_instances: TwoInstances) -> None:
    """Chains whose every attempt alternates between the instances, every other first
    attempt timing out on the client and retried with the same token: 0/0/0."""
    ledger = Ledger()
    refused: list[str] = []
    async with two_instances.a.async_client() as a, two_instances.b.async_client() as b:
        pairs = [await alogin((a, b)[n % 2], "alice") for n in range(6)]
        await asyncio.gather(
            *(
                run_chain((a, b)[n % 2], n, pair, ledger, rotations=6, first_timeout=0.02,
                          refused=refused)
                for n, pair in enumerate(pairs)
            )
        )  # fmt: skip
        count = await ledger.count(a)
    assert not refused, refused
    assert count == ZERO, str(count)
