"""Storing again, from the database, the revocations a Redis has lost (docs/design.md §3:
the database is the truth, Redis a cache that can be rebuilt from it).

A Redis restarted without persistence (a rescheduled pod) comes back empty: a deny-list
consumer that starts then would not know the sessions revoked before, and would accept their
access tokens until they expire. So each time the service (re)connects, it compares Redis's
``run_id`` (new at every start of the Redis process) with the one recorded under
``<channel>.stored-in`` when the live revocations were last stored. If they differ, one
instance — the one that takes the lock ``<channel>.storing`` (it expires, in case that
instance dies) — reads every revocation whose access tokens may still be live from the
database (one indexed query) and stores each as the fan-out does, ``<channel>:<name>`` with
its expiry, and announces it on ``channel``, in pipelines of a few hundred; then it records
the run id. Consumers connected already hear the announcements; those that start later find
the keys.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from ..core.clock import Clock

LOCK_MS = 30_000  # an instance that dies while storing holds the lock this long
BATCH = 500  # revocations per pipeline

Entries = Callable[[], Awaitable[list[tuple[str, float]]]]  # (name, until), from the database


class StoringElsewhere(Exception):
    """Another instance holds the lock: look again later (it may die before it is done)."""


async def store_again_if_lost(
    redis: Redis, *, channel: str, entries: Entries, clock: Clock
) -> list[tuple[str, float]] | None:
    """Store and announce ``entries()`` if Redis restarted since they were last stored; what
    was stored, or ``None`` when there was nothing to do. Raises :class:`StoringElsewhere`
    while another instance is at it."""
    marker, lock = f"{channel}.stored-in", f"{channel}.storing"  # outside "<channel>:*"
    run_id = str((await redis.info("server"))["run_id"])
    if await redis.get(marker) == run_id:
        return None
    token = secrets.token_hex(8)
    if not await redis.set(lock, token, nx=True, px=LOCK_MS):
        raise StoringElsewhere()  # its announcements reach every subscriber meanwhile
    try:
        if await redis.get(marker) == run_id:
            return None  # done by another instance between our look and our lock
        stored = await entries()
        now = clock.now()
        for start in range(0, len(stored), BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for name, until in stored[start : start + BATCH]:
                    ttl_ms = math.ceil((until - now) * 1000)
                    if ttl_ms > 0:
                        pipe.set(f"{channel}:{name}", repr(until), px=ttl_ms)
                        pipe.publish(channel, f"{name} {until!r}")
                await pipe.execute()
        await redis.set(marker, run_id)
    finally:
        if await redis.get(lock) == token:
            await redis.delete(lock)
    return stored
