"""The service: login, refresh with rotation, logout, users — over a store and the core.

Every decision about tokens and sessions is made by the pure core; this layer sequences
store calls and runs password hashing off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .core.access import AccessTokenIssuer
from .core.clock import Clock
from .core.errors import (
    InvalidCredentials,
    InvalidRequest,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RevokedToken,
    SessionRevoked,
    TooManyRequests,
)
from .core.keyring import KeyRing, StoredKey
from .core.keys import Algorithm, SigningKey
from .core.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from .core.refresh import NONCE_BYTES, RefreshToken, RefreshTokenCodec
from .core.sealing import Sealer
from .core.sessions import (
    Outcome,
    RevocationReason,
    Rotation,
    Session,
    SessionPolicy,
    classify_failed_rotation,
    new_session,
)
from .core.users import User, username_key
from .core.verifier import AccessClaims, Verifier
from .events import Events, NullEvents
from .revocation import LocalRevocations, Revocations
from .store.protocol import Store
from .throttle import LocalThrottle, Throttle

log = logging.getLogger("latchkey.service")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        return (
            f"TokenPair(expires_in={self.expires_in}, refresh_expires_in={self.refresh_expires_in})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    account: int = 10  # failed logins per account per window
    address: int = 100  # failed logins per client address per window


@dataclass(frozen=True, slots=True)
class ClientInfo:
    user_agent: str | None = None
    address: str | None = None


class AuthService:
    def __init__(
        self,
        *,
        store: Store,
        keyring: KeyRing,
        sealer: Sealer,
        refresh_codec: RefreshTokenCodec,
        hasher: PasswordHasher,
        policy: SessionPolicy,
        clock: Clock,
        issuer: str,
        audience: str,
        access_ttl: int,
        leeway: int = 0,
        signing_alg: Algorithm = "RS256",
        imported_key: SigningKey | None = None,
        events: Events | None = None,
        revocations: Revocations | None = None,
        throttle: Throttle | None = None,
        limits: ThrottleLimits | None = None,
        hash_workers: int | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.hasher = hasher
        self.events: Events = events or NullEvents()
        self.revocations: Revocations = revocations or LocalRevocations(clock)
        self.throttle: Throttle = throttle or LocalThrottle(clock, 900)
        self.limits = limits or ThrottleLimits()
        self._codec = refresh_codec
        self._sealer = sealer
        self._signing_alg: Algorithm = signing_alg
        self._imported_key = imported_key
        self.issuer_name = issuer
        self.keys = keyring
        self.access = AccessTokenIssuer(
            keyring, issuer=issuer, audience=audience, ttl=access_ttl, clock=clock
        )
        # The service's own guard: keys from the ring, revoked sessions from the deny-list.
        self.verifier = Verifier(
            keyring,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            max_lifetime=access_ttl,
            clock=clock,
            revoked_sessions=self.revocations.local,
        )
        # Password hashing is CPU-bound: run it on a small pool, never on the event loop.
        self._pool = ThreadPoolExecutor(
            max_workers=hash_workers or os.cpu_count() or 2, thread_name_prefix="latchkey-hash"
        )

    async def _off_loop(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self.revocations.close()
        await self.throttle.close()
        await self.store.close()

    # --- keys ----------------------------------------------------------------------------

    async def load_keys(self, *, create: bool = False) -> None:
        """Reload the key ring from the store (every instance does this periodically, so a
        key added anywhere is used everywhere without a restart). With ``create``, make the
        first key — or import ``LATCHKEY_SIGNING_KEY_FILE`` — when needed."""
        now = self.clock.now()
        stored = await self.store.list_signing_keys()
        if create:
            imported = self._imported_key
            if imported is not None and imported.kid not in {key.kid for key in stored}:
                await self.store.add_signing_key(
                    StoredKey.seal(imported, self._sealer, now=now, activates_at=now)
                )
                stored = await self.store.list_signing_keys()
            elif not any(key.retired_at is None for key in stored):
                first = SigningKey.generate(self._signing_alg)
                await self.store.add_signing_key(
                    StoredKey.seal(first, self._sealer, now=now, activates_at=now),
                    only_if_none=True,
                )
                stored = await self.store.list_signing_keys()
        self.keys.load(stored, now)

    # --- users ---------------------------------------------------------------------------

    async def add_user(self, username: str, password: str, scope: str = "") -> User:
        if not username.strip() or len(username) > 255 or not username.isprintable():
            raise InvalidRequest("The username must have 1 to 255 printable characters.")
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidRequest(f"The password must have 1 to {MAX_PASSWORD_LENGTH} characters.")
        password_hash = await self._off_loop(self.hasher.hash, password)
        user = User(
            id=uuid.uuid4().hex,
            username=username.strip(),
            password_hash=password_hash,
            created_at=self.clock.now(),
            scope=" ".join(scope.split()),
        )
        await self.store.add_user(user)
        return user

    async def list_users(self) -> list[User]:
        return await self.store.list_users()

    # --- login, refresh, logout ----------------------------------------------------------

    async def login(self, username: str, password: str, client: ClientInfo) -> TokenPair:
        key = username_key(username)
        account, address = f"account:{key}", f"address:{client.address or '-'}"
        # Throttle per account and per address (ASVS V6.3); unknown accounts alike.
        wait = max(
            await self.throttle.retry_after(account, self.limits.account),
            await self.throttle.retry_after(address, self.limits.address),
        )
        if wait:
            raise TooManyRequests(retry_after=wait)
        user = await self.store.user_by_name(key)
        # Unknown users are checked against a dummy hash: same cost, same answer (ASVS V6.3).
        ok, new_hash = await self._off_loop(
            self.hasher.verify, user.password_hash if user else None, password
        )
        if not ok or user is None or user.disabled_at is not None:
            await self.throttle.failed(account)
            await self.throttle.failed(address)
            self.events.login(ok=False)
            log.info("login failed")
            raise InvalidCredentials()
        await self.throttle.reset(account)
        if new_hash is not None:
            await self.store.set_password_hash(user.id, new_hash)
        now = self.clock.now()
        token = self._codec.first(self._codec.new_sid())
        session = new_session(
            token,
            user_id=user.id,
            scope=user.scope,
            now=now,
            policy=self.policy,
            user_agent=client.user_agent[:512] if client.user_agent else None,
            address=client.address,
        )
        await self.store.add_session(session)
        self.events.login(ok=True)
        log.info("login ok", extra={"user_id": user.id, "sid": session.sid})
        return self._pair(session, token, now)

    async def refresh(self, refresh_token: object) -> TokenPair:
        presented = self._codec.decode(refresh_token)  # forged/tampered: rejected, no lookup
        now = self.clock.now()
        nonce = secrets.token_bytes(NONCE_BYTES)
        successor = self._codec.successor(presented, nonce)
        session = await self.store.rotate(
            Rotation(
                sid=presented.sid,
                expected_generation=presented.generation,
                expected_hash=presented.digest,
                new_generation=successor.generation,
                new_hash=successor.digest,
                nonce=nonce,
                now=now,
                idle_expires_at=now + self.policy.refresh_ttl,
            )
        )
        if session is None:
            session, successor = await self._after_failed_rotation(presented, now)
        else:
            self.events.refresh("rotated")
        return self._pair(session, successor, now)

    async def _after_failed_rotation(
        self, presented: RefreshToken, now: float
    ) -> tuple[Session, RefreshToken]:
        session = await self.store.get_session(presented.sid)
        outcome = classify_failed_rotation(session, presented, now, self.policy)
        if outcome is Outcome.GRACE_REPLAY:
            assert session is not None and session.rotation_nonce is not None
            successor = self._codec.successor(presented, session.rotation_nonce)
            if successor.digest == session.current_hash:
                self.events.refresh("grace")
                log.info("refresh retried within grace", extra={"sid": session.sid})
                return session, successor
            outcome = Outcome.INVALID
        if outcome is Outcome.REUSE:
            assert session is not None
            self.events.refresh("reused")
            log.warning(
                "refresh token reuse detected: session revoked",
                extra={"sid": session.sid, "user_id": session.user_id},
            )
            await self._revoke(session.sid, RevocationReason.REUSE_DETECTED)
            raise RefreshTokenReused()
        if outcome is Outcome.REVOKED:
            self.events.refresh("revoked")
            raise SessionRevoked()
        if outcome is Outcome.EXPIRED:
            self.events.refresh("expired")
            raise RefreshTokenExpired()
        self.events.refresh("invalid")
        raise RefreshTokenInvalid()

    async def _revoke(self, sid: str, reason: RevocationReason) -> None:
        """Revoke in the store (the truth), then announce it so that every instance's guard
        rejects the session's access tokens until the last of them has expired."""
        now = self.clock.now()
        if await self.store.revoke_session(sid, reason, now):
            self.events.revoked(reason)
        await self.revocations.publish(sid, now + self.access.ttl)

    def _pair(self, session: Session, token: RefreshToken, now: float) -> TokenPair:
        access = self.access.issue(
            subject=session.user_id,
            sid=session.sid,
            scope=session.scope,
            auth_time=int(session.created_at),
        )
        # The session row knows the token's idle expiry (also for a grace replay, whose
        # successor was fixed at the first refresh) and the absolute cap.
        refresh_expires_at = session.expires_at()
        return TokenPair(
            access_token=access.token,
            expires_in=self.access.ttl,
            refresh_token=self._codec.encode(token),
            refresh_expires_in=max(0, int(refresh_expires_at - now)),
        )

    async def logout_with_refresh_token(self, refresh_token: object) -> None:
        # Any genuine token of the session ends it; logging out twice is not an error.
        presented = self._codec.decode(refresh_token)
        await self._revoke(presented.sid, RevocationReason.LOGOUT)
        log.info("logout", extra={"sid": presented.sid})

    async def logout_with_access_token(self, claims: AccessClaims) -> None:
        await self._revoke(claims["sid"], RevocationReason.LOGOUT)
        log.info("logout", extra={"sid": claims["sid"]})

    # --- access tokens -------------------------------------------------------------------

    def verify_access_token(self, token: str) -> AccessClaims:
        return self.verifier.verify(token)

    async def me(self, claims: AccessClaims) -> dict[str, Any]:
        """The caller's identity; also confirms the session is still live."""
        session = await self.store.get_session(claims.get("sid", ""))
        if session is None or not session.is_live(self.clock.now()):
            raise RevokedToken()
        user = await self.store.user_by_id(claims["sub"])
        if user is None or user.disabled_at is not None:
            raise RevokedToken()
        return {
            "sub": user.id,
            "username": user.username,
            "sid": session.sid,
            "scope": claims.get("scope", ""),
            "exp": claims["exp"],
        }

    def jwks(self) -> dict[str, Any]:
        return self.keys.to_jwks()
