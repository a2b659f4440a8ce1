"""Sessions: a user's own list and sign-outs, the administrator's list and revocations, and
the background work that keeps every instance's deny-list and the tables current."""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters.revocations import LiveRevocations, Revocations
from ..core.clock import Clock
from ..core.epochs import UserCutoff
from ..core.errors import NotFound
from ..core.refresh import SID_BYTES
from ..core.sessions import RevocationReason, Session
from ..core.verifier import AccessClaims
from ..store.protocol import SessionStore, UserStore
from .context import ClientInfo
from .lookup import Liveness, user_named
from .revoker import Revoker

FEED_OVERLAP = 5.0  # seconds the revocation feed reads back past the newest entry seen
LIVE_PAGE = 10_000  # rows per read of the revocations still live
PURGE_BATCH = 500  # rows deleted per purge transaction


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as its user sees it (``GET /auth/sessions``); no secret, no hash."""

    sid: str
    created_at: float
    last_used_at: float
    expires_at: float
    user_agent: str | None
    address: str | None
    current: bool


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """What is kept (docs/sessions.md)."""

    audit_retention: int  # seconds an audit event is kept
    purge_batch: int = PURGE_BATCH  # rows deleted per purge transaction


class SessionService:
    def __init__(
        self,
        *,
        sessions: SessionStore,
        users: UserStore,
        clock: Clock,
        revocations: Revocations,
        liveness: Liveness,
        revoker: Revoker,
        access_ttl: int,
        housekeeping: Housekeeping,
    ) -> None:
        self._sessions = sessions
        self._users = users
        self._clock = clock
        self._revocations = revocations
        self._liveness = liveness
        self._revoker = revoker
        self._access_ttl = access_ttl
        self.housekeeping = housekeeping
        self._revocations_seen: float | None = None  # cursor of sync_revocations

    # --- the user's own ------------------------------------------------------------------

    async def sessions_of(self, claims: AccessClaims) -> list[SessionView]:
        """``GET /auth/sessions``: the caller's live sessions, the caller's own marked."""
        user = await self._liveness.bearer_user(claims)
        now = self._clock.now()
        return [
            SessionView(
                sid=s.sid,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at(),
                user_agent=s.user_agent,
                address=s.address,
                current=s.sid == claims["sid"],
            )
            for s in await self._sessions.list_sessions(user.id, live_at=now)
        ]

    async def end_own_session(self, claims: AccessClaims, sid: str, client: ClientInfo) -> None:
        """``DELETE /auth/sessions/{sid}``: only the caller's own live sessions; anything
        else is a 404, whether it exists or not (no probing of other users' ids)."""
        user = await self._liveness.bearer_user(claims)
        if len(sid) != 2 * SID_BYTES or not all(ch in "0123456789abcdef" for ch in sid):
            # Never one of our ids: no query (PostgreSQL refuses text with NUL, a 503).
            raise NotFound("No such session.")
        reason = (
            RevocationReason.LOGOUT if sid == claims["sid"] else RevocationReason.REVOKED_BY_USER
        )
        if not await self._revoker.revoke(sid, reason, client, user_id=user.id):
            raise NotFound("No such session.")

    async def logout_all(self, claims: AccessClaims, client: ClientInfo) -> int:
        """``POST /auth/logout-all``: every session of the caller's user, the caller's too;
        needs a recent login (a stolen access token must not lock the user out)."""
        user = await self._liveness.recently_authenticated_user(claims)
        return await self._revoker.revoke_all_of(user.id, RevocationReason.LOGOUT_ALL, client)

    # --- administrators (`latchkey sessions …`) ------------------------------------------

    async def list_sessions(
        self, username: str | None = None, *, include_ended: bool = False
    ) -> list[Session]:
        """Sessions of one user or of everyone, newest use first."""
        user_id = (await user_named(self._users, username)).id if username else None
        live_at = None if include_ended else self._clock.now()
        return await self._sessions.list_sessions(user_id, live_at=live_at)

    async def revoke_session(self, sid: str) -> bool:
        """``latchkey sessions revoke SID``; ``False`` if it was revoked already."""
        if await self._revoker.revoke(sid, RevocationReason.ADMIN, user_id=None):
            return True
        if await self._sessions.get_session(sid) is None:
            raise NotFound("No such session.")
        return False

    async def revoke_sessions_of(self, username: str) -> int:
        """``latchkey sessions revoke --user USERNAME``."""
        user = await user_named(self._users, username)
        return await self._revoker.revoke_all_of(user.id, RevocationReason.ADMIN)

    # --- background work -----------------------------------------------------------------

    async def sync_revocations(self) -> int:
        """Add sessions revoked in the store (by any process: another instance, the CLI)
        to this process's deny-list; how many were new. Run every second or so: with it,
        a revocation reaches every guard without Redis, one indexed query per interval."""
        now = self._clock.now()
        ttl = self._access_ttl
        # A fresh process starts one access-token lifetime back (it learns every revocation
        # whose tokens may still be out there), then goes on from the newest one seen, with
        # an overlap for other processes' clocks a little behind ours and slow commits.
        cursor = now - ttl if self._revocations_seen is None else self._revocations_seen
        added = 0
        denied = self._revocations.local
        since = cursor - FEED_OVERLAP  # the same for both reads: each may be late
        for sid, revoked_at in await self._sessions.revoked_since(since):
            until = revoked_at + ttl
            if until > now and sid not in denied:
                denied.add(sid, until)
                added += 1
            cursor = max(cursor, revoked_at)
        # Every session of a user ended at once: one cutoff for the user, at any count.
        for revocation in await self._sessions.user_revocations_since(since):
            until = revocation.revoked_at + ttl
            if until > now and denied.cutoff(revocation.user_id) != revocation.cutoff:
                denied.add_user(
                    revocation.user_id,
                    revocation.revoked_at,
                    until,
                    exempt_sid=revocation.kept_sid,
                )
                added += 1
            cursor = max(cursor, revocation.revoked_at)
        self._revocations_seen = cursor
        return added

    async def live_revocations(self) -> LiveRevocations:
        """Every session revoked within the last access-token lifetime (its tokens may still
        be out there), and every user's cutoff of that time, read from the store through the
        indexes on the revocation times: what
        the Redis fan-out stores again when Redis has lost its data (docs/deployment.md)."""
        now = self._clock.now()
        ttl = self._access_ttl
        live: dict[str, float] = {}
        cursor = now - ttl
        while True:  # pages of the one indexed range query, oldest first
            page = await self._sessions.revoked_since(cursor, limit=LIVE_PAGE)
            for sid, revoked_at in page:
                if revoked_at + ttl > now:
                    live[sid] = revoked_at + ttl
            # A full page moves the cursor on (the next page starts at its last instant);
            # one that cannot (a page of one instant) ends the reading.
            if len(page) < LIVE_PAGE or page[-1][1] <= cursor:
                break
            cursor = page[-1][1]
        users: dict[str, tuple[UserCutoff, float]] = {}
        cursor = now - ttl
        while True:  # the same for the mass revocations: one cutoff per user
            revocations = await self._sessions.user_revocations_since(cursor, limit=LIVE_PAGE)
            for revocation in revocations:
                until = revocation.revoked_at + ttl
                if until > now:
                    known = users.get(revocation.user_id)
                    cutoff = revocation.cutoff
                    users[revocation.user_id] = (
                        (cutoff, until) if known is None else (known[0].merged(cutoff), until)
                    )
            if len(revocations) < LIVE_PAGE or revocations[-1].revoked_at <= cursor:
                break
            cursor = revocations[-1].revoked_at
        return LiveRevocations(
            sessions=list(live.items()),
            users=[(user, cutoff, until) for user, (cutoff, until) in users.items()],
        )

    async def purge(self) -> int:
        """Delete one batch of dead sessions and old audit events (called in a loop by the
        server: storage cleans itself, no cron job). A session row is kept one access-token
        lifetime past its revocation or expiry, for the deny-list feed and for a clear
        "revoked" answer to late refreshes."""
        now = self._clock.now()
        return await self._sessions.purge(
            sessions_before=now - self._access_ttl,
            audit_before=now - self.housekeeping.audit_retention,
            batch=self.housekeeping.purge_batch,
        )
