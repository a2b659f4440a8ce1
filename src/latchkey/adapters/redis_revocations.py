"""Redis fan-out of the deny-list (docs/design.md §3, §6).

:class:`RedisRevocations` keeps every instance's
:class:`~latchkey.adapters.revocations.LocalDenyList` in step. A revocation is stored as
``<channel>:<name>`` (value ``until``, TTL ``until - now`` by the injected clock, so a skew
between this host's and Redis's clock does not matter) and announced on ``channel`` as
``"<name> <until>"`` in one MULTI/EXEC. ``name`` is a session id (one revoked session), or
``user:<user id>:<not before>:<exempt sid or ->`` (every session of a user ended at once: one
entry whatever their number; :func:`user_entry_name`). A background task subscribes, then
SCANs the stored keys (so an instance started late, or one that lost its connection, learns
what it missed), then adds every message to the local list.

Failure policy (deliberate): Redis is never on the critical path.

- ``publish`` with Redis unreachable, hung or slower than the circuit's ``wait`` DEGRADES:
  the local list is updated first, nothing is raised, and the revocation is kept in a pending
  list that is stored and announced as soon as the subscriber is connected again (entries
  whose tokens have expired in the meantime are dropped). It goes through a
  :class:`~latchkey.adapters.redis_circuit.Circuit` (shared with the throttle by the
  service): a hung Redis costs a logout at most ``wait`` once, and one WARNING per outage.
  The database stays the truth for refresh tokens; until then, other instances accept that
  session's access tokens (at most their lifetime).
- The subscriber reconnects by itself (backoff 0.1 s doubling to 2 s) and rescans; it PINGs
  a silent subscription so a half-open connection is noticed within seconds.
- Redis is a cache of the database, which knows every revocation. When a (re)connection of
  the service finds that Redis has restarted since the live revocations were last stored in
  it (Redis's ``run_id`` differs from the one recorded under ``<channel>.stored-in``), it
  stores again every revocation whose access tokens may still be live, read from the
  database, and announces each: a consumer started after an empty restart learns them too.
  One instance does it at a time (``<channel>.storing``, a lock that expires).
- :meth:`RedisRevocations.ping` is the one call that fails loudly, for readiness checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from ..core.clock import Clock
from ..core.errors import LatchkeyError, ServiceUnavailable
from .redis_circuit import Circuit, CircuitOpen, circuit_for
from .redis_common import (
    FAILURES,
    Warnings,
    as_text,
    connect,
    describe,
    glob_escape,
    logger,
    redact_url,
)
from .redis_store_again import StoringElsewhere, store_again_if_lost
from .revocations import LocalDenyList, Source

_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 2.0
_WARN_EVERY = 30.0
_POLL = 1.0  # how long one get_message waits; messages are handled as soon as they arrive
_IDLE_PING = 5.0  # PING a subscription silent this long; no answer → reconnect
_STORE_RETRY = 5.0  # seconds before storing them again is retried after a failure


_USER = "user:"


def user_entry_name(user_id: str, not_before: float, exempt_sid: str | None) -> str:
    """The feed's name of a per-user cutoff (user ids and session ids hold no ``:``)."""
    return f"{_USER}{user_id}:{not_before!r}:{exempt_sid or '-'}"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class RedisRevocations:
    """Revocations shared by every instance through Redis keys and a pub/sub channel."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        channel: str = "latchkey:revoked",
        socket_timeout: float = 0.5,
        circuit: Circuit | None = None,
    ) -> None:
        self._clock = clock
        self._local = LocalDenyList(clock)
        self._channel = channel
        self._prefix = f"{channel}:"
        self._timeout = socket_timeout
        # Commands retry once at once (a pooled connection may be stale after a restart);
        # the subscription never retries inside redis-py: the task reconnects and rescans.
        self._redis = connect(url, socket_timeout, retries=1)
        self._sub_redis = connect(url, socket_timeout, retries=0)
        self._where = redact_url(url)
        self._warnings = Warnings()
        self._circuit = circuit or circuit_for(url, timeout=socket_timeout)
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()
        self._failing = False
        self._pending: dict[str, float] = {}  # name → until, not yet stored in Redis
        self._source: Source | None = None
        self._store_again_at: float | None = None  # loop time of the next attempt, if one failed

    @property
    def local(self) -> LocalDenyList:
        return self._local

    async def publish(self, sid: str, until: float) -> None:
        """Deny ``sid`` here at once, then store and announce it; never raises on Redis."""
        self._local.add(sid, until)
        await self._publish(sid, until)

    async def publish_user(
        self, user_id: str, not_before: float, until: float, *, exempt_sid: str | None = None
    ) -> None:
        """Apply a per-user cutoff here at once, then store and announce it, like
        :meth:`publish`: one key and one message, whatever the user's session count."""
        self._local.add_user(user_id, not_before, until, exempt_sid=exempt_sid)
        await self._publish(user_entry_name(user_id, not_before, exempt_sid), until)

    async def _publish(self, name: str, until: float) -> None:
        try:
            await self._circuit.call(lambda: self._announce(name, until))
        except CircuitOpen:
            # Applied here already; the others learn it once Redis answers (the circuit's
            # WARNING says Redis is out).
            self._pending[name] = max(until, self._pending.get(name, until))
            logger.debug("a revocation waits for Redis at %s", self._where)

    @property
    def pending(self) -> int:
        """How many revocations wait for Redis to come back."""
        return len(self._pending)

    async def _announce(self, name: str, until: float) -> None:
        ttl_ms = math.ceil((until - self._clock.now()) * 1000)
        if ttl_ms <= 0:
            return  # every access token it covers has expired: nothing to announce
        value = repr(until)
        async with asyncio.timeout(self._timeout):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._prefix + name, value, px=ttl_ms)
                pipe.publish(self._channel, f"{name} {value}")
                await pipe.execute()

    async def _flush_pending(self) -> None:
        """Store and announce what ``publish`` could not; stops at the first failure."""
        for name, until in list(self._pending.items()):
            await self._announce(name, until)
            if self._pending.get(name) == until:
                del self._pending[name]

    async def start(self, source: Source | None = None) -> None:
        """Start following the channel; waits briefly for the first attempt, never fails.
        With ``source`` (the service), the revocations still live are stored again from it
        whenever a (re)connection finds that Redis lost them."""
        if self._task is not None:
            return
        self._source = source
        self._attempted.clear()
        self._task = asyncio.create_task(self._follow(), name="latchkey-revocations")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(4 * self._timeout):
                await self._attempted.wait()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._circuit.close()  # idempotent: a shared circuit may be closed twice
        await self._sub_redis.aclose()
        await self._redis.aclose()

    async def ping(self) -> None:
        """For readiness: raise :class:`ServiceUnavailable` at once while the circuit is
        open, else unless Redis answers within the timeout (a failure opens the circuit)."""
        if self._circuit.is_open:
            raise ServiceUnavailable()
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except FAILURES as exc:
            self._circuit.trip(exc)
            raise ServiceUnavailable() from exc

    # --- the subscriber ----------------------------------------------------------------------

    async def _follow(self) -> None:
        delay = _BACKOFF_FIRST
        while True:
            pubsub = self._sub_redis.pubsub()
            try:
                await self._catch_up(pubsub)
                await self._try_to_store_again()
                await self._flush_pending()
                delay = _BACKOFF_FIRST
                if self._failing:
                    self._failing = False
                    logger.info(
                        "Redis at %s reachable again; revocations resynchronised", self._where
                    )
                self._attempted.set()
                await self._listen(pubsub)
            except Exception as exc:  # any failure: log, back off, reconnect, rescan
                self._failing = True
                self._attempted.set()
                self._warnings.warn(
                    "subscribe",
                    "Redis at %s: revocation feed lost (%s); reconnecting",
                    self._where,
                    describe(exc),
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.reset()  # = aclose(), which redis-py leaves untyped
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_CAP)

    async def _catch_up(self, pubsub: PubSub) -> None:
        """Subscribe (confirmed), then load the stored revocations: nothing falls between."""
        await pubsub.subscribe(self._channel)
        while True:
            message = await pubsub.get_message(timeout=self._timeout)
            if message is None:
                raise RedisConnectionError("no confirmation of SUBSCRIBE")
            if message["type"] == "subscribe":
                break
        pattern = glob_escape(self._prefix) + "*"
        cursor = 0
        while True:
            cursor, keys = await self._redis.scan(cursor, match=pattern, count=1000)
            if keys:
                values = await self._redis.mget(keys)
                for key, value in zip(keys, values, strict=True):
                    if value is not None:
                        self._add(as_text(key)[len(self._prefix) :], as_text(value))
            if cursor == 0:
                return

    async def _try_to_store_again(self) -> None:
        """:meth:`_store_again_if_lost`; if the database (or Redis) fails meanwhile, it is
        tried again a few seconds later, without dropping the subscription."""
        self._store_again_at = None
        try:
            await self._store_again_if_lost()
        except StoringElsewhere:
            self._store_again_at = asyncio.get_running_loop().time() + _STORE_RETRY
        except (*FAILURES, LatchkeyError) as exc:
            self._store_again_at = asyncio.get_running_loop().time() + _STORE_RETRY
            self._warnings.warn(
                "store",
                "Redis at %s: could not store the live revocations again (%s); retrying",
                self._where,
                describe(exc),
            )

    async def _store_again_if_lost(self) -> None:
        """See :func:`~latchkey.adapters.redis_store_again.store_again_if_lost`; what is
        stored again goes into this instance's list as well."""
        source = self._source
        if source is None:
            return

        async def entries() -> list[tuple[str, float]]:
            live = await source()
            users = (
                (user_entry_name(user, cutoff.not_before, cutoff.exempt_sid), until)
                for user, cutoff, until in live.users
            )
            return [*live.sessions, *users]

        stored = await store_again_if_lost(
            self._redis, channel=self._channel, entries=entries, clock=self._clock
        )
        if stored is not None:
            for name, until in stored:
                self._add(name, repr(until))
            logger.info(
                "Redis at %s had restarted: %d revocations stored in it again from the database",
                self._where,
                len(stored),
            )

    async def _listen(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=_POLL
            )
            if self._pending:
                await self._flush_pending()
            now = loop.time()
            if self._store_again_at is not None and now >= self._store_again_at:
                await self._try_to_store_again()
            if message is not None:
                heard, pinged = now, None
                if message["type"] == "message":
                    name, _, until = str(message["data"]).rpartition(" ")
                    self._add(name, until)
            elif pinged is not None:
                if now - pinged > _POLL + self._timeout:
                    raise RedisConnectionError("no answer to PING on the subscription")
            elif now - heard >= _IDLE_PING:
                await pubsub.ping()
                pinged = now

    def _add(self, name: str, raw_until: str) -> None:
        until = _number(raw_until)
        if name.startswith(_USER):
            user_id, _, rest = name[len(_USER) :].partition(":")
            raw_not_before, _, exempt = rest.partition(":")
            not_before = _number(raw_not_before)
            if user_id and exempt and math.isfinite(not_before) and math.isfinite(until):
                exempt_sid = None if exempt == "-" else exempt
                self._local.add_user(user_id, not_before, until, exempt_sid=exempt_sid)
                return
        elif name and ":" not in name and math.isfinite(until):
            self._local.add(name, until)
            return
        logger.debug("ignored a malformed revocation on %s", self._channel)
