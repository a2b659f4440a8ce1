"""Who is behind a name or a token: the lookups the services share.

One place decides whether a session is live for a user: :meth:`Liveness.live`, used by the
routes a bearer token calls and by token introspection alike.
"""

from __future__ import annotations

from collections import OrderedDict

from ..core.clock import Clock
from ..core.errors import NotFound, RevokedToken
from ..core.sessions import Session
from ..core.users import User, username_key
from ..core.verifier import AccessClaims, require_recent_login
from ..store.protocol import SessionStore, UserStore


async def user_named(users: UserStore, username: str) -> User:
    user = await users.user_by_name(username_key(username))
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


NAME_TTL = 60.0  # seconds a process answers /auth/me with a name before reading it again


class UserNames:
    """Users' names by id, read once per user, process and ``ttl`` seconds (at most ``size``
    kept, the least recently used dropped first): a rename (``latchkey user update``) shows
    within ``ttl`` everywhere. A disabled or deleted user is not answered here, and one seen
    earlier is refused before this by the deny-list, since disabling or deleting ends every
    session of the user (docs/sessions.md)."""

    def __init__(
        self, users: UserStore, clock: Clock, *, size: int = 10_000, ttl: float = NAME_TTL
    ) -> None:
        self._users = users
        self._clock = clock
        self._size = size
        self._ttl = ttl
        self._names: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def name(self, user_id: str) -> str | None:
        """The enabled user's name, or ``None``."""
        now = self._clock.now()
        cached = self._names.get(user_id)
        if cached is not None and now < cached[1]:
            self._names.move_to_end(user_id)
            return cached[0]
        user = await self._users.user_by_id(user_id)
        if user is None or user.disabled_at is not None:
            self._names.pop(user_id, None)
            return None
        self._names[user_id] = (user.username, now + self._ttl)
        self._names.move_to_end(user_id)
        if len(self._names) > self._size:
            self._names.popitem(last=False)
        return user.username


class Liveness:
    def __init__(
        self, sessions: SessionStore, users: UserStore, clock: Clock, *, fresh_auth_max_age: int
    ) -> None:
        self._sessions = sessions
        self._users = users
        self._clock = clock
        self.fresh_auth_max_age = fresh_auth_max_age

    async def live(self, sid: str, user_id: str | None = None) -> tuple[Session, User] | None:
        """The live session ``sid`` (of ``user_id`` when given) and its enabled user, if
        there are: read from the store, not from this process's deny-list."""
        session = await self._sessions.get_session(sid)
        if session is None or not session.is_live(self._clock.now()):
            return None
        if user_id is not None and session.user_id != user_id:
            return None
        user = await self._users.user_by_id(session.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return session, user

    async def bearer_user(self, claims: AccessClaims) -> User:
        """The enabled user behind an access token whose session is live (else 401)."""
        live = await self.live(claims.get("sid", ""), claims["sub"])
        if live is None:
            raise RevokedToken()
        return live[1]

    async def recently_authenticated_user(self, claims: AccessClaims) -> User:
        """:meth:`bearer_user` for the sensitive operations (password and e-mail changes,
        signing out everywhere): the token's ``auth_time`` must also be at most
        LATCHKEY_FRESH_AUTH_MAX_AGE old, else 401 ``insufficient_user_authentication``
        (RFC 9470 §3; OWASP ASVS v5 V7.5.3)."""
        user = await self.bearer_user(claims)
        require_recent_login(claims, self.fresh_auth_max_age, self._clock.now())
        return user
