"""What the Redis adapters share: clients bounded by a timeout, and rate-limited warnings.

Every Redis call is bounded by ``socket_timeout``; warnings are logged on logger
``latchkey.redis`` at most once per 30 s of wall time per kind, never with the URL's
credentials, a session id or a throttle key.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger("latchkey.redis")

FAILURES = (RedisError, OSError)  # OSError covers TimeoutError from asyncio.timeout
WARN_EVERY = 30.0


def connect(url: str, timeout: float, *, retries: int) -> Redis:
    """A client whose every step (connect, read) gives up after ``timeout``."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        decode_responses=True,
    )


def redact_url(url: str) -> str:
    """``scheme://host:port/db`` without user, password or query (which may hold one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Warnings:
    """One warning per kind at most every 30 s of wall time, so an outage is not a flood."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last >= WARN_EVERY:
            self._last[kind] = now
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)
