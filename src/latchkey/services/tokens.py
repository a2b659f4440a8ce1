"""Login, refresh with rotation, logout: the token use cases (docs/design.md §2).

Every decision about tokens and sessions is made by the pure core; this service sequences
store calls and runs password hashing off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ..adapters.throttle import Throttle
from ..core.audit import AuditEvent, AuditKind
from ..core.epochs import first_issue_at
from ..core.errors import (
    AccountDisabled,
    InvalidCredentials,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshTokenSuperseded,
    RevokedToken,
    SessionRevoked,
    TooManyRequests,
    WrongPassword,
)
from ..core.passwords import PasswordHasher
from ..core.refresh import RefreshToken, RefreshTokenCodec
from ..core.sessions import (
    Outcome,
    RevocationReason,
    Session,
    SessionPolicy,
    classify_failed_rotation,
    new_session,
    next_rotation,
)
from ..core.users import User, username_key
from ..core.verifier import AccessClaims
from ..store.protocol import SessionStore, UserStore
from .access import AccessTokens, TokenPair
from .context import ClientInfo, Context, ThrottleLimits
from .lookup import UserNames
from .revoker import Revoker

log = logging.getLogger("latchkey.service")

CAP_BATCH = 100  # sessions past the cap ended by one login, at most


class TokenService:
    """``/auth/login``, ``/auth/refresh``, ``/auth/logout`` and ``/auth/me``."""

    def __init__(
        self,
        *,
        users: UserStore,
        sessions: SessionStore,
        context: Context,
        access: AccessTokens,
        codec: RefreshTokenCodec,
        hasher: PasswordHasher,
        policy: SessionPolicy,
        throttle: Throttle,
        limits: ThrottleLimits,
        revoker: Revoker,
        audit_refreshes: bool,
        max_sessions: int = 100,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._context = context
        self._access = access
        self._codec = codec
        self._hasher = hasher
        self.policy = policy
        self._throttle = throttle
        self._limits = limits
        self._names = UserNames(users, context.clock)
        self._revoker = revoker
        self.audit_refreshes = audit_refreshes  # one audit row per refresh (the log line always)
        self.max_sessions = max_sessions  # live sessions per user; a login past it ends the oldest

    async def login(self, username: str, password: str, client: ClientInfo) -> TokenPair:
        context = self._context
        key = username_key(username)
        account, address = f"account:{key}", f"address:{client.address or '-'}"
        # Throttle per account and per address (ASVS V6.3); unknown accounts alike. Growing
        # delays are per account: an address (a NAT, a proxy: many users) has only its cap,
        # so that one user's typos or a guesser beside them cannot slow everyone down.
        limits = self._limits
        wait = max(
            await self._throttle.retry_after(account, limits.account),
            await self._throttle.retry_after(address, limits.address, free=limits.address),
        )
        if wait:
            raise TooManyRequests(retry_after=wait)
        user = await self._users.user_by_name(key)
        # Unknown users are checked against a dummy hash: same cost, same answer (ASVS V6.3).
        ok, new_hash = await context.hashing.run(
            self._hasher.verify, user.password_hash if user else None, password
        )
        if not ok or user is None:
            await self._throttle.failed(account)
            await self._throttle.failed(address)
            # Unknown account: not even the name typed is kept (it may be a password).
            await self._failed_login(user, client, "wrong_password" if user else "unknown_user")
            raise InvalidCredentials()
        await self._throttle.reset(account)
        if user.disabled_at is not None:
            # Only now, with the right password, does the caller learn the account is
            # disabled: a guesser still sees the one invalid_grant answer.
            await self._failed_login(user, client, "user_disabled")
            raise AccountDisabled()
        if new_hash is not None:
            await self._users.set_password_hash(user.id, new_hash)
        now = context.clock.now()
        # A cutoff in this very second (every session of the user just ended) would refuse an
        # access token issued now, its iat being whole seconds: wait for the next second
        # (core/epochs.py), at most once per mass revocation of this user, under a second.
        delay = first_issue_at(user.not_before) - now
        if delay > 0:
            await asyncio.sleep(delay)
            now = context.clock.now()
        token = self._codec.first(self._codec.new_sid())
        session = new_session(
            token,
            user_id=user.id,
            scope=user.scope,
            now=now,
            policy=self.policy,
            user_agent=client.user_agent[:512] if client.user_agent else None,
            address=client.address,
            epoch=user.epoch,  # a mass revocation after the password check ends it too
        )
        event = AuditEvent(
            at=now,
            kind=AuditKind.LOGIN_OK,
            user_id=user.id,
            username=user.username,
            sid=session.sid,
            address=client.address,
            user_agent=session.user_agent,
        )
        await self._sessions.add_session(session, audit=[event])
        context.events.login(ok=True)
        context.audit.log(event)
        await self._end_sessions_past_the_cap(session, client)
        return self._access.pair(session, token, now)

    async def _end_sessions_past_the_cap(self, session: Session, client: ClientInfo) -> None:
        """The user's oldest live sessions past LATCHKEY_MAX_SESSIONS_PER_USER end, a bounded
        number per login (one, once a user is at the cap): what one user holds stays small
        whoever logs in how often."""
        reason = RevocationReason.SESSION_LIMIT
        now = session.created_at
        ended = await self._sessions.end_oldest_sessions(
            session.user_id,
            session.epoch,
            keep=self.max_sessions,
            now=now,
            reason=reason.value,
            batch=CAP_BATCH,
            audit=AuditEvent(
                at=now,
                kind=AuditKind.SESSION_REVOKED,
                address=client.address,
                user_agent=client.user_agent,
                reason=reason.value,
            ),
        )
        if ended:
            await self._revoker.announce_sessions(ended, reason, now, session.user_id)

    async def reauthenticate(
        self, claims: AccessClaims, password: str, client: ClientInfo
    ) -> dict[str, Any]:
        """``POST /auth/reauthenticate``: the password proved again in the bearer token's
        session, which then carries this instant as its ``auth_time`` (RFC 9470 §3; OWASP
        ASVS v5 V7.5.3); a new access token for the same session, no new session and no
        refresh token. Throttled with the same counts as the login, so a stolen access token
        gains no guesses (ASVS V6.3.1)."""
        sid = claims.get("sid")
        user = await self._users.user_by_id(claims["sub"])
        if not sid or user is None or user.disabled_at is not None:
            raise RevokedToken()
        limits = self._limits
        account, address = f"account:{user.key}", f"address:{client.address or '-'}"
        wait = max(
            await self._throttle.retry_after(account, limits.account),
            await self._throttle.retry_after(address, limits.address, free=limits.address),
        )
        if wait:
            raise TooManyRequests(retry_after=wait)
        ok, new_hash = await self._context.hashing.run(
            self._hasher.verify, user.password_hash, password
        )
        now = self._context.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.REAUTHENTICATED,
            user_id=user.id,
            username=user.username,
            sid=sid,
            address=client.address,
            user_agent=client.user_agent,
        )
        if not ok:
            await self._throttle.failed(account)
            await self._throttle.failed(address)
            failed = dataclasses.replace(
                event, kind=AuditKind.REAUTHENTICATION_FAILED, reason="wrong_password"
            )
            await self._context.audit.record(failed)
            raise WrongPassword("The password is wrong.")
        await self._throttle.reset(account)
        if new_hash is not None:
            await self._users.set_password_hash(user.id, new_hash)
        session = await self._sessions.reauthenticate(sid, user.id, now, audit=event)
        if session is None:
            raise RevokedToken()  # the session ended meanwhile: sign in again
        self._context.audit.log(event)
        return self._access.access_only(session, now)

    async def _failed_login(self, user: User | None, client: ClientInfo, reason: str) -> None:
        self._context.events.login(ok=False)
        await self._context.audit.record(
            AuditEvent(
                at=self._context.clock.now(),
                kind=AuditKind.LOGIN_FAILED,
                user_id=user.id if user else None,
                username=user.username if user else None,
                address=client.address,
                user_agent=client.user_agent,
                reason=reason,
            )
        )

    async def refresh(
        self, refresh_token: object, client: ClientInfo | None = None, *, scope: str | None = None
    ) -> TokenPair:
        """Rotate. With ``scope``, the new access token carries only those of the session's
        scopes (RFC 6749 §6 down-scoping); the session keeps the scope granted at login."""
        presented = self._codec.decode(refresh_token)  # forged/tampered: rejected, no lookup
        client = client or ClientInfo()
        now = self._context.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.REFRESH,
            address=client.address,
            user_agent=client.user_agent,
        )
        rotation, successor = next_rotation(presented, self._codec, now=now, policy=self.policy)
        session = await self._sessions.rotate(
            rotation, audit=event if self.audit_refreshes else None
        )
        if session is None:
            session, successor = await self._after_failed_rotation(presented, now, client)
        else:
            self._context.events.refresh("rotated")
            self._context.audit.log(
                dataclasses.replace(event, user_id=session.user_id, sid=session.sid),
                level=logging.DEBUG,
            )
        return self._access.pair(session, successor, now, scope=scope)

    async def _after_failed_rotation(
        self, presented: RefreshToken, now: float, client: ClientInfo
    ) -> tuple[Session, RefreshToken]:
        events = self._context.events
        session = await self._sessions.get_session(presented.sid)
        outcome = classify_failed_rotation(session, presented, now, self.policy)
        if outcome is Outcome.GRACE_REPLAY:
            assert session is not None and session.rotation_nonce is not None
            successor = self._codec.successor(presented, session.rotation_nonce)
            if successor.digest == session.current_hash:
                events.refresh("grace")
                log.info("refresh retried within grace", extra={"sid": session.sid})
                return session, successor
            outcome = Outcome.INVALID
        if outcome is Outcome.REUSE:
            assert session is not None
            events.refresh("reused")
            detected = AuditEvent(
                at=now,
                kind=AuditKind.REUSE_DETECTED,
                user_id=session.user_id,
                sid=session.sid,
                address=client.address,
                user_agent=client.user_agent,
                reason=f"generation {presented.generation} of {session.generation}",
            )
            await self._context.audit.record(detected, level=logging.WARNING)
            await self._revoker.revoke(session.sid, RevocationReason.REUSE_DETECTED, client)
            raise RefreshTokenReused()
        if outcome is Outcome.STALE:
            # Current within the window: a straggler (docs/sessions.md), never theft.
            events.refresh("stale")
            raise RefreshTokenSuperseded()
        if outcome is Outcome.REVOKED:
            assert session is not None
            events.refresh("revoked")
            user = await self._users.user_by_id(session.user_id)
            if user is not None and user.disabled_at is not None:
                raise AccountDisabled()  # its own code: the client stops, no refresh loop
            raise SessionRevoked()
        if outcome is Outcome.EXPIRED:
            events.refresh("expired")
            raise RefreshTokenExpired()
        events.refresh("invalid")
        raise RefreshTokenInvalid()

    def parse_refresh_token(self, refresh_token: object) -> RefreshToken:
        """Parse and authenticate (MAC) a refresh token, with no lookup and no side effect;
        :class:`RefreshTokenInvalid` for anything the server never issued."""
        return self._codec.decode(refresh_token)

    async def logout_with_refresh_token(
        self, refresh_token: object, client: ClientInfo | None = None
    ) -> None:
        # Any genuine token of the session ends it; logging out twice is not an error.
        presented = self._codec.decode(refresh_token)
        await self._revoker.revoke(presented.sid, RevocationReason.LOGOUT, client)

    async def logout_with_access_token(
        self, claims: AccessClaims, client: ClientInfo | None = None
    ) -> None:
        await self._revoker.revoke(claims["sid"], RevocationReason.LOGOUT, client)

    def verify_access_token(self, token: str) -> AccessClaims:
        return self._access.verify(token)

    async def me(self, claims: AccessClaims) -> dict[str, Any]:
        """The caller's identity, with no database read once the user's name is known.

        The session is live if the token is: it was verified against this process's
        deny-list (revoked sessions, users whose sessions all ended), and no access token
        outlives its session's idle or absolute expiry (:meth:`AccessTokens.pair`). A
        revocation made by another process reaches this one through the revocation feed
        (docs/sessions.md)."""
        name = await self._names.name(claims["sub"])
        if name is None:
            raise RevokedToken()
        return {
            "sub": claims["sub"],
            "username": name,
            "sid": claims["sid"],
            "scope": claims.get("scope", ""),
            "exp": claims["exp"],
        }
