"""Redis adapters: the deny-list fan-out and the shared login throttle (DESIGN §3, §6).

:class:`RedisRevocations` keeps every instance's :class:`~latchkey.revocation.LocalDenyList`
in step. A revocation is stored as ``<channel>:<name>`` (value ``until``, TTL ``until - now``
by the injected clock, so a skew between this host's and Redis's clock does not matter) and
announced on ``channel`` as ``"<name> <until>"`` in one MULTI/EXEC. ``name`` is a session id
(one revoked session), or ``user:<user id>:<not before>:<exempt sid or ->`` (every session of
a user ended at once: one entry whatever their number; :func:`user_entry_name`). A background
task subscribes, then SCANs the stored keys (so an instance started late, or one that lost its
connection, learns what it missed), then adds every message to the local list.

:class:`RedisThrottle` counts failures in one sorted set per key (score = the injected clock's
time), read and written in MULTI/EXEC transactions, so every instance sees the same counts, and
applies exactly the policy of :class:`~latchkey.throttle.LocalThrottle` (the same
:func:`~latchkey.throttle.wait_seconds`): the first ``free`` failures in the window are free,
each further one doubles the delay after the last failure up to ``max_delay``, ``limit``
failures wait for the window; nothing lasts longer than the window (OWASP ASVS v5 6.3.1).

Failure policy (deliberate): Redis is never on the critical path.

- ``publish`` with Redis unreachable DEGRADES: the local list is updated first, a warning is
  logged, nothing is raised, and the revocation is kept in a pending list that is stored and
  announced as soon as the subscriber is connected again (entries whose tokens have expired
  in the meantime are dropped). The database stays the truth for refresh tokens; until
  then, other instances accept that session's access tokens (at most their lifetime).
- The subscriber reconnects by itself (backoff 0.1 s doubling to 2 s) and rescans; it PINGs
  a silent subscription so a half-open connection is noticed within seconds.
- The throttle with Redis unreachable DEGRADES to an in-process :class:`LocalThrottle` with
  the same window, free failures and delays (single-node counts) and never raises; counts
  recorded there are not merged back.
- Every Redis call is bounded by ``socket_timeout``; warnings are logged on logger
  ``latchkey.redis`` at most once per 30 s of wall time per kind, never with the URL's
  credentials, a session id or a throttle key.
- :meth:`RedisRevocations.ping` is the one call that fails loudly, for readiness checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .core.clock import Clock
from .core.errors import ServiceUnavailable
from .revocation import LocalDenyList
from .throttle import FREE_FAILURES, MAX_DELAY, LocalThrottle, wait_seconds

logger = logging.getLogger("latchkey.redis")

_FAILURES = (RedisError, OSError)  # OSError covers TimeoutError from asyncio.timeout
_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 2.0
_WARN_EVERY = 30.0
_POLL = 1.0  # how long one get_message waits; messages are handled as soon as they arrive
_IDLE_PING = 5.0  # PING a subscription silent this long; no answer → reconnect


def _client(url: str, timeout: float, *, retries: int) -> Redis:
    """A client whose every step (connect, read) gives up after ``timeout``."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        decode_responses=True,
    )


def _redact(url: str) -> str:
    """``scheme://host:port/db`` without user, password or query (which may hold one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_USER = "user:"


def user_entry_name(user_id: str, not_before: float, exempt_sid: str | None) -> str:
    """The feed's name of a per-user cutoff (user ids and session ids hold no ``:``)."""
    return f"{_USER}{user_id}:{not_before!r}:{exempt_sid or '-'}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Warnings:
    """One warning per kind at most every 30 s of wall time, so an outage is not a flood."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last >= _WARN_EVERY:
            self._last[kind] = now
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)


class RedisRevocations:
    """Revocations shared by every instance through Redis keys and a pub/sub channel."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        channel: str = "latchkey:revoked",
        socket_timeout: float = 0.5,
    ) -> None:
        self._clock = clock
        self._local = LocalDenyList(clock)
        self._channel = channel
        self._prefix = f"{channel}:"
        self._timeout = socket_timeout
        # Commands retry once at once (a pooled connection may be stale after a restart);
        # the subscription never retries inside redis-py: the task reconnects and rescans.
        self._redis = _client(url, socket_timeout, retries=1)
        self._sub_redis = _client(url, socket_timeout, retries=0)
        self._where = _redact(url)
        self._warnings = _Warnings()
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()
        self._failing = False
        self._pending: dict[str, float] = {}  # name → until, not yet stored in Redis

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
            await self._announce(name, until)
        except _FAILURES as exc:
            self._pending[name] = max(until, self._pending.get(name, until))
            self._warnings.warn(
                "publish",
                "Redis at %s unreachable (%s): revocation applied on this instance now, "
                "announced to the others once Redis is back",
                self._where,
                _describe(exc),
            )

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

    async def start(self) -> None:
        """Start following the channel; waits briefly for the first attempt, never fails."""
        if self._task is not None:
            return
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
        await self._sub_redis.aclose()
        await self._redis.aclose()

    async def ping(self) -> None:
        """For readiness: raise :class:`ServiceUnavailable` unless Redis answers in time."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except _FAILURES as exc:
            raise ServiceUnavailable() from exc

    # --- the subscriber ----------------------------------------------------------------------

    async def _follow(self) -> None:
        delay = _BACKOFF_FIRST
        while True:
            pubsub = self._sub_redis.pubsub()
            try:
                await self._catch_up(pubsub)
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
                    _describe(exc),
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
        pattern = _glob_escape(self._prefix) + "*"
        cursor = 0
        while True:
            cursor, keys = await self._redis.scan(cursor, match=pattern, count=1000)
            if keys:
                values = await self._redis.mget(keys)
                for key, value in zip(keys, values, strict=True):
                    if value is not None:
                        self._add(_text(key)[len(self._prefix) :], _text(value))
            if cursor == 0:
                return

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


class RedisThrottle:
    """Sliding-window failure counts shared by every instance (one sorted set per key).

    Same growing delays and hard cap as :class:`~latchkey.throttle.LocalThrottle` (ASVS v5
    6.3.1); scores are the injected clock's time, never Redis's.
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        window: int,
        *,
        free: int = FREE_FAILURES,
        max_delay: int = MAX_DELAY,
        prefix: str = "latchkey:throttle:",
        socket_timeout: float = 0.5,
    ) -> None:
        self._clock = clock
        self._window = window
        self._free = free
        self._max_delay = max_delay
        self._prefix = prefix
        self._timeout = socket_timeout
        self._redis = _client(url, socket_timeout, retries=1)
        self._fallback = LocalThrottle(clock, window, free=free, max_delay=max_delay)
        self._where = _redact(url)
        self._warnings = _Warnings()

    async def retry_after(self, key: str, limit: int, *, free: int | None = None) -> int:
        now = self._clock.now()
        name = self._prefix + key
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zremrangebyscore(name, "-inf", now - self._window)
                    pipe.zcard(name)
                    pipe.zrange(name, -1, -1, withscores=True)
                    pipe.zrange(name, -limit, -limit, withscores=True)
                    _, count, newest, nth_newest = await pipe.execute()
        except _FAILURES as exc:
            self._degraded(exc)
            return await self._fallback.retry_after(key, limit, free=free)
        count = int(count)
        return wait_seconds(
            now,
            count=count,
            newest=float(newest[0][1]) if newest else None,
            limit_oldest=float(nth_newest[0][1]) if 0 < limit <= count and nth_newest else None,
            limit=limit,
            window=self._window,
            free=self._free if free is None else free,
            max_delay=self._max_delay,
        )

    async def failed(self, key: str) -> None:
        now = self._clock.now()
        name = self._prefix + key
        member = f"{now!r}:{secrets.token_hex(6)}"  # unique even when the clock stands still
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zadd(name, {member: now})
                    pipe.zremrangebyscore(name, "-inf", now - self._window)
                    pipe.expire(name, self._window)
                    await pipe.execute()
        except _FAILURES as exc:
            self._degraded(exc)
            await self._fallback.failed(key)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.delete(self._prefix + key)
        except _FAILURES as exc:
            self._degraded(exc)

    async def close(self) -> None:
        await self._redis.aclose()

    def _degraded(self, exc: BaseException) -> None:
        self._warnings.warn(
            "throttle",
            "Redis at %s unreachable (%s): login throttling counts on this instance only",
            self._where,
            _describe(exc),
        )
