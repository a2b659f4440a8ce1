"""The service's deny-list of revoked sessions, for APIs that verify tokens themselves.

A resource server that checks access tokens with :class:`latchkey.Verifier` can reject the
tokens of a revoked session at once (docs/design.md §3, "Immediate revocation") by following
the same Redis the latchkey service announces revocations on::

    revoked = RedisDenyList("redis://cache.internal:6379/0")
    verifier = Verifier.from_jwks_url(jwks_url, issuer=..., audience=..., revoked_sessions=revoked)

It runs its own event loop in a daemon thread, so it works the same under Flask, Django,
Starlette or FastAPI; a lookup is in memory (no I/O per request). If
Redis is unreachable it keeps what it knows and catches up when Redis is back (the policy of
:class:`latchkey.adapters.redis_revocations.RedisRevocations`); access tokens still end with
their lifetime.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from ..adapters.redis_revocations import RedisRevocations
from ..core.clock import Clock, SystemClock


class RedisDenyList:
    """The service's revocations, kept current from Redis in the background: revoked session
    ids, and per-user cutoffs (every session of a user ended at once: one entry, whatever
    their number). A :class:`~latchkey.core.verifier.DenyList` and a ``Container[str]`` of
    revoked session ids."""

    def __init__(
        self,
        url: str,
        *,
        channel: str = "latchkey:revoked",
        clock: Clock | None = None,
        socket_timeout: float = 0.5,
    ) -> None:
        self._revocations = RedisRevocations(
            url, clock or SystemClock(), channel=channel, socket_timeout=socket_timeout
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="latchkey-denylist", daemon=True
        )
        self._thread.start()
        # Returns once the first subscription attempt is made (bounded; never raises).
        self._call(self._revocations.start()).result()

    def _call(self, work: Coroutine[Any, Any, None]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    def refuses(self, sub: object, sid: object, iat: float) -> bool:
        return self._revocations.local.refuses(sub, sid, iat)

    def __contains__(self, sid: object) -> bool:
        return sid in self._revocations.local

    def __len__(self) -> int:
        return len(self._revocations.local)

    def close(self) -> None:
        """Stop following Redis (idempotent)."""
        if self._loop.is_closed():
            return
        self._call(self._revocations.close()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> RedisDenyList:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
