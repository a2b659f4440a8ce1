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
)
from .core.keys import SigningKey
from .core.keysets import StaticKeySet
from .core.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from .core.refresh import NONCE_BYTES, RefreshToken, RefreshTokenCodec
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
from .store.protocol import Store

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
class ClientInfo:
    user_agent: str | None = None
    address: str | None = None


class AuthService:
    def __init__(
        self,
        *,
        store: Store,
        signing_key: SigningKey,
        refresh_codec: RefreshTokenCodec,
        hasher: PasswordHasher,
        policy: SessionPolicy,
        clock: Clock,
        issuer: str,
        audience: str,
        access_ttl: int,
        leeway: int = 0,
        hash_workers: int | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.hasher = hasher
        self._codec = refresh_codec
        self.issuer_name = issuer
        self.keys = StaticKeySet([signing_key.public])
        self.access = AccessTokenIssuer(
            signing_key, issuer=issuer, audience=audience, ttl=access_ttl, clock=clock
        )
        self.verifier = Verifier(
            self.keys,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            max_lifetime=access_ttl,
            clock=clock,
        )
        # Password hashing is CPU-bound: run it on a small pool, never on the event loop.
        self._pool = ThreadPoolExecutor(
            max_workers=hash_workers or os.cpu_count() or 2, thread_name_prefix="latchkey-hash"
        )

    async def _off_loop(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self.store.close()

    # --- users ---------------------------------------------------------------------------

    async def add_user(self, username: str, password: str, scope: str = "") -> User:
        if not username.strip() or len(username) > 255:
            raise InvalidRequest("The username must have 1 to 255 characters.")
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
        user = await self.store.user_by_name(username_key(username))
        # Unknown users are checked against a dummy hash: same cost, same answer (ASVS V6.3).
        ok, new_hash = await self._off_loop(
            self.hasher.verify, user.password_hash if user else None, password
        )
        if not ok or user is None or user.disabled_at is not None:
            log.info("login failed")
            raise InvalidCredentials()
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
                log.info("refresh retried within grace", extra={"sid": session.sid})
                return session, successor
            outcome = Outcome.INVALID
        if outcome is Outcome.REUSE:
            assert session is not None
            await self.store.revoke_session(session.sid, RevocationReason.REUSE_DETECTED, now)
            log.warning(
                "refresh token reuse detected: session revoked",
                extra={"sid": session.sid, "user_id": session.user_id},
            )
            raise RefreshTokenReused()
        if outcome is Outcome.REVOKED:
            raise SessionRevoked()
        if outcome is Outcome.EXPIRED:
            raise RefreshTokenExpired()
        raise RefreshTokenInvalid()

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
        await self.store.revoke_session(presented.sid, RevocationReason.LOGOUT, self.clock.now())
        log.info("logout", extra={"sid": presented.sid})

    async def logout_with_access_token(self, claims: AccessClaims) -> None:
        await self.store.revoke_session(claims["sid"], RevocationReason.LOGOUT, self.clock.now())
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
