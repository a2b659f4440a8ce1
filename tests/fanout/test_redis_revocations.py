"""RedisRevocations: the deny-list reaches every instance, late starters, and survives outages."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio
from redis_helpers import UNREACHABLE_URL, MakeRevocations, ThrowawayRedis, eventually

from latchkey.adapters.redis_revocations import RedisRevocations
from latchkey.core.clock import ManualClock
from latchkey.core.epochs import UserCutoff
from latchkey.core.errors import ServiceUnavailable

pytestmark = pytest.mark.anyio

LIFETIME = 900.0


async def test_publish_reaches_another_instance_within_a_second(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock
) -> None:
    """A revocation published on instance A is in B's local list within 1 s."""
    a = await make_revocations(redis_url)
    b = await make_revocations(redis_url)
    await a.publish("sid-1", clock.now() + LIFETIME)
    assert "sid-1" in a.local
    assert await eventually(lambda: "sid-1" in b.local, within=1.0)


async def test_instance_started_later_learns_earlier_revocations(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock
) -> None:
    """An instance started after a publish knows the sid from the stored keys."""
    a = await make_revocations(redis_url)
    await a.publish("sid-early", clock.now() + LIFETIME)
    late = await make_revocations(redis_url)
    assert await eventually(lambda: "sid-early" in late.local, within=1.0)


async def test_entries_expire_with_the_clock(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock, namespace: str
) -> None:
    """Entries leave every local list when ``until`` passes, and the Redis key has that TTL."""
    a = await make_revocations(redis_url)
    b = await make_revocations(redis_url)
    await a.publish("sid-short", clock.now() + 60)
    assert await eventually(lambda: "sid-short" in b.local, within=1.0)

    async with redis.asyncio.Redis.from_url(redis_url) as client:
        ttl_ms = await client.pttl(f"{namespace}:revoked:sid-short")
    assert 0 < ttl_ms <= 60_000

    clock.advance(60)
    assert "sid-short" not in a.local
    assert "sid-short" not in b.local


async def test_malformed_messages_are_ignored(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock, namespace: str
) -> None:
    """Garbage on the channel is skipped; the next valid revocation still arrives."""
    b = await make_revocations(redis_url)
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        await client.publish(f"{namespace}:revoked", "no-until-here")
        await client.publish(f"{namespace}:revoked", "sid-x nan")
        await client.publish(f"{namespace}:revoked", f"sid-ok {clock.now() + LIFETIME!r}")
    assert await eventually(lambda: "sid-ok" in b.local, within=1.0)
    assert "sid-x" not in b.local
    assert len(b.local) == 1


async def test_publish_with_redis_unreachable_degrades_to_local(
    make_revocations: MakeRevocations, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, publish raises nothing, denies locally and warns without secrets."""
    caplog.set_level(logging.WARNING, logger="latchkey.redis")
    a = await make_revocations(UNREACHABLE_URL)
    await a.publish("sid-down", clock.now() + LIFETIME)
    assert "sid-down" in a.local
    warnings = [r for r in caplog.records if r.name == "latchkey.redis"]
    assert warnings
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "not-a-real-password" not in caplog.text
    assert "sid-down" not in caplog.text


async def test_start_and_close_with_redis_unreachable_do_not_raise() -> None:
    """start() returns although Redis is down (the task keeps retrying); close() stops it."""
    revocations = RedisRevocations(UNREACHABLE_URL, ManualClock(), socket_timeout=0.2)
    await revocations.start()
    await asyncio.sleep(0.3)  # let it fail and back off at least once
    await revocations.close()


async def test_ping_reports_readiness(redis_url: str) -> None:
    """ping() succeeds against a live Redis and raises ServiceUnavailable when it is down."""
    live = RedisRevocations(redis_url, ManualClock())
    down = RedisRevocations(UNREACHABLE_URL, ManualClock())
    try:
        await live.ping()
        with pytest.raises(ServiceUnavailable):
            await down.ping()
    finally:
        await live.close()
        await down.close()


async def test_delivery_resumes_after_redis_restarts(
    throwaway_redis: ThrowawayRedis,
    make_revocations: MakeRevocations,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After Redis is killed and restarted, B resubscribes and receives A's revocations."""
    caplog.set_level(logging.INFO, logger="latchkey.redis")
    a = await make_revocations(throwaway_redis.url)
    b = await make_revocations(throwaway_redis.url)
    await a.publish("sid-before", clock.now() + LIFETIME)
    assert await eventually(lambda: "sid-before" in b.local, within=1.0)

    throwaway_redis.restart()

    await a.publish("sid-after-restart", clock.now() + LIFETIME)
    assert await eventually(lambda: "sid-after-restart" in b.local, within=5.0)
    # Having caught up, B is subscribed again: live delivery is back to well under 1 s.
    await a.publish("sid-live", clock.now() + LIFETIME)
    assert await eventually(lambda: "sid-live" in b.local, within=1.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "latchkey.redis"]
    assert any("feed lost" in m for m in messages)
    assert any("reachable again" in m for m in messages)


async def test_a_user_cutoff_reaches_other_instances_and_late_starters(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock, namespace: str
) -> None:
    """One key and one message per user, whatever its session count; an instance started
    later loads it from the key."""
    a = await make_revocations(redis_url)
    b = await make_revocations(redis_url)
    at = clock.now() + 0.25
    await a.publish_user("user-1", at, at + LIFETIME, exempt_sid="kept")
    assert a.local.cutoff("user-1") == UserCutoff(at, "kept")
    assert await eventually(lambda: b.local.cutoff("user-1") is not None, within=1.0)
    assert b.local.cutoff("user-1") == UserCutoff(at, "kept")
    late = await make_revocations(redis_url)
    assert await eventually(lambda: late.local.cutoff("user-1") is not None, within=1.0)
    assert late.local.cutoff("user-1") == UserCutoff(at, "kept")
    assert len(late.local) == 1
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:revoked:*")]
    assert len(keys) == 1


async def test_a_user_cutoff_without_exemption_and_a_later_one(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock
) -> None:
    a = await make_revocations(redis_url)
    b = await make_revocations(redis_url)
    first, second = clock.now(), clock.now() + 1.5
    await a.publish_user("user-1", first, first + LIFETIME, exempt_sid="kept")
    await a.publish_user("user-1", second, second + LIFETIME)
    assert await eventually(lambda: b.local.cutoff("user-1") == UserCutoff(second), within=1.0)


async def test_malformed_user_entries_are_ignored(
    redis_url: str, make_revocations: MakeRevocations, clock: ManualClock, namespace: str
) -> None:
    b = await make_revocations(redis_url)
    until = repr(clock.now() + LIFETIME)
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        for bad in ("user:", "user:u1", "user:u1:nan:-", "user::5.0:-", "user:u1:5.0", "a:b"):
            await client.publish(f"{namespace}:revoked", f"{bad} {until}")
        await client.publish(f"{namespace}:revoked", f"user:u2:5.0:- {until}")
    assert await eventually(lambda: b.local.cutoff("u2") is not None, within=1.0)
    assert b.local.cutoff("u2") == UserCutoff(5.0)
    assert len(b.local) == 1
