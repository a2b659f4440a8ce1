"""The deny-list of revoked sessions (DESIGN §3 "Immediate revocation").

A revoked session's access tokens must stop working before they expire. The deny-list holds
``sid → until`` (the moment the last access token of that session expires) and forgets each
entry then, so it stays small. :class:`LocalDenyList` is the in-process list; it is a
``Container[str]``, which is what :class:`latchkey.Verifier` consults (no I/O per request).
A fan-out (e.g. Redis) adds entries received from other instances to every local list.
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol

from .core.clock import Clock


class LocalDenyList:
    """Revoked session ids with expiry; thread-safe; membership test is O(1)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, sid: str, until: float) -> None:
        with self._lock:
            if until > self._until.get(sid, float("-inf")):
                self._until[sid] = until
                heapq.heappush(self._expiry, (until, sid))
            self._purge(self._clock.now())

    def __contains__(self, sid: object) -> bool:
        until = self._until.get(sid) if isinstance(sid, str) else None
        return until is not None and self._clock.now() < until

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock.now())
            return len(self._until)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            until, sid = heapq.heappop(self._expiry)
            if self._until.get(sid) == until:
                del self._until[sid]


class Revocations(Protocol):
    """Where the service announces revoked sessions; adapters fan them out to instances."""

    @property
    def local(self) -> LocalDenyList: ...

    async def publish(self, sid: str, until: float) -> None: ...

    async def start(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`~latchkey.core.errors.ServiceUnavailable` if the fan-out is down."""
        ...

    async def close(self) -> None: ...


class LocalRevocations:
    """One process: the announcement only updates the local list."""

    def __init__(self, clock: Clock) -> None:
        self._local = LocalDenyList(clock)

    @property
    def local(self) -> LocalDenyList:
        return self._local

    async def publish(self, sid: str, until: float) -> None:
        self._local.add(sid, until)

    async def start(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass
