"""The deny-list of revoked sessions and users (docs/design.md §3, "Immediate revocation").

A revoked session's access tokens must stop working before they expire. The deny-list holds
``sid → until`` (the moment the last access token of that session expires) and, for a user
whose sessions all ended at once, one ``user → cutoff`` (:class:`~latchkey.core.epochs.
UserCutoff`: refuse that user's tokens issued before an instant), whatever the number of
sessions. Each entry is forgotten at its ``until``, so the list stays small.
:class:`LocalDenyList` is the in-process list; :class:`latchkey.Verifier` consults it through
:meth:`LocalDenyList.refuses` (no I/O per request). A fan-out (e.g. Redis) adds entries
received from other instances to every local list.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core.clock import Clock
from ..core.epochs import UserCutoff


class LocalDenyList:
    """Revoked session ids and per-user cutoffs with expiry; thread-safe; lookups are O(1).

    It is a ``Container[str]`` of session ids too (``sid in deny_list``)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}  # sid → until
        self._users: dict[str, tuple[UserCutoff, float]] = {}  # user id → cutoff, until
        self._expiry: list[tuple[float, bool, str]] = []  # until, is a user, key
        self._lock = threading.Lock()

    def add(self, sid: str, until: float) -> None:
        """Refuse the access tokens of session ``sid`` until ``until``."""
        with self._lock:
            if until > self._until.get(sid, float("-inf")):
                self._until[sid] = until
                heapq.heappush(self._expiry, (until, False, sid))
            self._purge(self._clock.now())

    def add_user(
        self, user_id: str, not_before: float, until: float, *, exempt_sid: str | None = None
    ) -> None:
        """Refuse the access tokens of ``user_id`` issued before ``not_before`` (but those of
        ``exempt_sid``) until ``until``; a later cutoff replaces an earlier one."""
        cutoff = UserCutoff(not_before, exempt_sid)
        with self._lock:
            known = self._users.get(user_id)
            if known is not None:
                cutoff, until = known[0].merged(cutoff), max(known[1], until)
            if known != (cutoff, until):
                self._users[user_id] = (cutoff, until)
                heapq.heappush(self._expiry, (until, True, user_id))
            self._purge(self._clock.now())

    def cutoff(self, user_id: str) -> UserCutoff | None:
        """The user's cutoff in force, if any."""
        entry = self._users.get(user_id)
        if entry is None or self._clock.now() >= entry[1]:
            return None
        return entry[0]

    def refuses(self, sub: object, sid: object, iat: float) -> bool:
        """Whether an access token with these (verified) claims is revoked."""
        now = self._clock.now()
        if isinstance(sid, str):
            until = self._until.get(sid)
            if until is not None and now < until:
                return True
        entry = self._users.get(sub) if isinstance(sub, str) else None
        return entry is not None and now < entry[1] and entry[0].refuses(sid, iat)

    def __contains__(self, sid: object) -> bool:
        until = self._until.get(sid) if isinstance(sid, str) else None
        return until is not None and self._clock.now() < until

    def __len__(self) -> int:
        """Entries held: one per revoked session, one per user revoked as a whole."""
        with self._lock:
            self._purge(self._clock.now())
            return len(self._until) + len(self._users)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            until, is_user, key = heapq.heappop(self._expiry)
            if is_user:
                if key in self._users and self._users[key][1] == until:
                    del self._users[key]
            elif self._until.get(key) == until:
                del self._until[key]


@dataclass(frozen=True, slots=True)
class LiveRevocations:
    """Every revocation whose access tokens may still be live, as the database knows them:
    what a fan-out that lost its data (Redis restarted empty) must hold again."""

    sessions: Sequence[tuple[str, float]]  # (sid, until)
    users: Sequence[tuple[str, UserCutoff, float]] = ()  # (user id, cutoff, until)


Source = Callable[[], Awaitable[LiveRevocations]]


class Revocations(Protocol):
    """Where the service announces revocations; adapters fan them out to instances."""

    @property
    def local(self) -> LocalDenyList: ...

    async def publish(self, sid: str, until: float) -> None: ...

    async def publish_user(
        self, user_id: str, not_before: float, until: float, *, exempt_sid: str | None = None
    ) -> None:
        """Announce a per-user cutoff (every session of the user ended at ``not_before``)."""
        ...

    async def start(self, source: Source | None = None) -> None:
        """Begin following the other instances; ``source`` reads the revocations still live
        from the database, for a fan-out to store again when it finds its data lost."""
        ...

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

    async def publish_user(
        self, user_id: str, not_before: float, until: float, *, exempt_sid: str | None = None
    ) -> None:
        self._local.add_user(user_id, not_before, until, exempt_sid=exempt_sid)

    async def start(self, source: Source | None = None) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass
