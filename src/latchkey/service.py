"""The service: login, refresh with rotation, logout, users — over a store and the core.

Every decision about tokens and sessions is made by the pure core; this layer sequences
store calls and runs password hashing off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .core.access import AccessTokenIssuer
from .core.audit import AuditEvent, AuditKind
from .core.clock import Clock
from .core.errors import (
    AccountDisabled,
    ConfigurationError,
    InvalidCredentials,
    NotFound,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RevokedToken,
    SessionRevoked,
    TooManyRequests,
    WrongPassword,
)
from .core.keyring import KeyRing, StoredKey
from .core.keys import Algorithm, SigningKey
from .core.passwords import PasswordHasher
from .core.policy import PasswordPolicy, normalize_username
from .core.refresh import NONCE_BYTES, SID_BYTES, RefreshToken, RefreshTokenCodec
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
audit_log = logging.getLogger("latchkey.audit")
_FEED_OVERLAP = 5.0  # seconds the revocation feed reads back past the newest entry seen
_KEY_ROW_RETENTION = 86400.0  # a dropped key's row is deleted this long after it was dropped
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = "Bearer"
    scope: str = ""  # the access token's; not in as_dict (DESIGN §4), /oauth/token adds it

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
    registrations: int = 20  # registrations per client address per window


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """What is kept, and what is recorded."""

    audit_retention: int = 90 * 86400  # seconds an audit event is kept
    audit_refreshes: bool = True  # one audit row per refresh (the log line is always written)
    purge_batch: int = 500  # rows deleted per purge transaction


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """When new signing keys sign (docs/keys.md)."""

    prepublish: int = 600  # seconds a new key is in the JWKS before it signs (> JWKS max-age)
    interval: int = 0  # rotate when the newest key is this many seconds old; 0: never


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.sid,
            "created_at": int(self.created_at),
            "last_used_at": int(self.last_used_at),
            "expires_at": int(self.expires_at),
            "user_agent": self.user_agent,
            "address": self.address,
            "current": self.current,
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
        password_policy: PasswordPolicy | None = None,
        allow_registration: bool = False,
        housekeeping: Housekeeping | None = None,
        key_rotation: KeyRotation | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.hasher = hasher
        self.events: Events = events or NullEvents()
        self.revocations: Revocations = revocations or LocalRevocations(clock)
        self.throttle: Throttle = throttle or LocalThrottle(clock, 900)
        self.limits = limits or ThrottleLimits()
        self.password_policy = password_policy or PasswordPolicy()
        self.allow_registration = allow_registration
        self.housekeeping = housekeeping or Housekeeping()
        self.key_rotation = key_rotation or KeyRotation()
        self._revocations_seen: float | None = None  # cursor of sync_revocations
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
        await self._delete_dropped_keys(now)

    async def _delete_dropped_keys(self, now: float) -> None:
        """Delete the rows (private keys) of keys dropped a day ago. The day covers clock skew
        between instances (none deletes a key another still accepts) and lets `keys list`
        show what was dropped. An imported key's row stays, so it is not imported again."""
        imported = self._imported_key.kid if self._imported_key else None
        gone = [
            status.key.kid
            for status in self.keys.status()
            if not status.published
            and status.dropped_after is not None
            and status.dropped_after + _KEY_ROW_RETENTION <= now
            and status.key.kid != imported
        ]
        if gone and await self.store.delete_signing_keys(gone):
            log.info("deleted dropped signing keys %s", ", ".join(gone))

    async def rotate_keys(self, *, immediately: bool = False, drop_previous: bool = False) -> str:
        """``latchkey keys rotate``: store a new key of LATCHKEY_SIGNING_ALG, published at
        once, signing from LATCHKEY_KEY_PREPUBLISH on (``immediately``: from now, for a
        compromise; caches that have not refetched the JWKS fail its tokens until they do).
        The key it replaces keeps verifying until its tokens have expired (core/keyring.py).
        ``drop_previous`` withdraws every other key at once (implies ``immediately``): the
        tokens they signed fail from now on. Returns the new kid."""
        immediately = immediately or drop_previous
        mode = "immediate" if immediately else "scheduled"
        kid = await self._add_key(None if immediately else self.key_rotation.prepublish, mode)
        if kid is None:  # never: the insert has no condition
            raise ConfigurationError("the new signing key was not stored")
        if drop_previous:
            for old in await self.store.withdraw_signing_keys(keep=kid, at=self.clock.now()):
                await self._key_event(f"withdrawn: {old}")  # one row each: reason is short
        await self.load_keys()
        return kid

    async def rotate_keys_if_due(self) -> str | None:
        """Automatic rotation (LATCHKEY_KEY_ROTATION_INTERVAL): a new key when the newest one
        is that old. Any number of instances may run this at once: one conditional insert in
        the store decides, so one key is added. The new kid, or ``None``."""
        interval = self.key_rotation.interval
        newest = max((status.key.created_at for status in self.keys.status()), default=None)
        if not interval or newest is None or self.clock.now() - newest < interval:
            return None
        kid = await self._add_key(self.key_rotation.prepublish, "automatic", interval=interval)
        if kid is not None:
            await self.load_keys()
        return kid

    async def _add_key(
        self, prepublish: int | None, mode: str, *, interval: int | None = None
    ) -> str | None:
        # RFC 8725 §3.5: keys from the OS CSPRNG (cryptography); RSA generation is slow.
        key = await self._off_loop(SigningKey.generate, self._signing_alg)
        now = self.clock.now()
        activates_at = now if prepublish is None else now + prepublish
        stored = StoredKey.seal(key, self._sealer, now=now, activates_at=activates_at)
        since = None if interval is None else now - interval
        if not await self.store.add_signing_key(stored, only_if_none_after=since):
            return None  # another instance rotated first
        await self._key_event(f"{mode}: {key.kid}")
        return key.kid

    async def _key_event(self, reason: str) -> None:
        event = AuditEvent(at=self.clock.now(), kind=AuditKind.KEY_ROTATED, reason=reason)
        await self._record(event)

    # --- users ---------------------------------------------------------------------------

    async def add_user(
        self,
        username: str,
        password: str,
        scope: str = "",
        *,
        registered: ClientInfo | None = None,
    ) -> User:
        """Create an account (``registered``: by self-registration from that client). The
        username and password rules are the same everywhere (core/policy.py)."""
        name = normalize_username(username)
        self.password_policy.check(password, username=name)
        password_hash = await self._off_loop(self.hasher.hash, password)
        now = self.clock.now()
        user = User(
            id=uuid.uuid4().hex,
            username=name,
            password_hash=password_hash,
            created_at=now,
            scope=" ".join(scope.split()),
        )
        client = registered or ClientInfo()
        event = AuditEvent(
            at=now,
            kind=AuditKind.USER_REGISTERED if registered else AuditKind.USER_CREATED,
            user_id=user.id,
            username=user.username,
            address=client.address,
            user_agent=client.user_agent,
        )
        await self.store.add_user(user, audit=[event])
        self._log_audit(event)
        return user

    async def register(self, username: str, password: str, client: ClientInfo) -> User:
        """``POST /auth/register``: off (404) unless LATCHKEY_ALLOW_REGISTRATION is set;
        throttled per client address like failed logins (ASVS V6.3.1)."""
        if not self.allow_registration:
            raise NotFound()
        address = f"register:{client.address or '-'}"
        wait = await self.throttle.retry_after(address, self.limits.registrations)
        if wait:
            raise TooManyRequests(retry_after=wait)
        await self.throttle.failed(address)  # every attempt counts, made or not
        return await self.add_user(username, password, registered=client)

    async def list_users(self) -> list[User]:
        return await self.store.list_users()

    async def user_named(self, username: str) -> User:
        user = await self.store.user_by_name(username_key(username))
        if user is None:
            raise NotFound(f"No user named {username!r}.")
        return user

    async def set_password(self, username: str, password: str) -> list[str]:
        """Administrator's reset: new password, every session of the user revoked."""
        user = await self.user_named(username)
        return await self._change_password(user, password, keep_sid=None, client=ClientInfo())

    async def change_password(
        self, claims: AccessClaims, current: str, new: str, client: ClientInfo
    ) -> None:
        """``POST /auth/password``: needs the current password (ASVS V6.2.3); every other
        session of the user is revoked, the caller's survives (ASVS V7.4.3)."""
        user = await self._bearer_user(claims)
        account = f"account:{user.key}"
        wait = await self.throttle.retry_after(account, self.limits.account)
        if wait:
            raise TooManyRequests(retry_after=wait)
        ok, _ = await self._off_loop(self.hasher.verify, user.password_hash, current)
        if not ok:
            await self.throttle.failed(account)  # a stolen access token must not help guess
            raise WrongPassword()
        await self._change_password(user, new, keep_sid=claims["sid"], client=client)

    async def _change_password(
        self, user: User, password: str, *, keep_sid: str | None, client: ClientInfo
    ) -> list[str]:
        self.password_policy.check(password, username=user.username)
        password_hash = await self._off_loop(self.hasher.hash, password)
        now = self.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.PASSWORD_CHANGED,
            user_id=user.id,
            username=user.username,
            sid=keep_sid,
            address=client.address,
            user_agent=client.user_agent,
            reason="self" if keep_sid else "admin",
        )
        revoked = await self.store.change_password(
            user.id, password_hash, now, keep_sid=keep_sid, audit=[event]
        )
        self._log_audit(event)
        await self._announce(revoked, RevocationReason.PASSWORD_CHANGED, now, user.id)
        return revoked

    async def set_disabled(self, username: str, *, disabled: bool) -> list[str]:
        """Disable (every session revoked at once) or enable an account."""
        user = await self.user_named(username)
        now = self.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.USER_DISABLED if disabled else AuditKind.USER_ENABLED,
            user_id=user.id,
            username=user.username,
            reason="admin",
        )
        revoked = await self.store.set_user_disabled(user.id, now, disabled=disabled, audit=[event])
        if revoked is None:
            raise NotFound(f"No user named {username!r}.")
        self._log_audit(event)
        await self._announce(revoked, RevocationReason.USER_DISABLED, now, user.id)
        return revoked

    async def delete_user(self, username: str) -> list[str]:
        user = await self.user_named(username)
        now = self.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.USER_DELETED,
            user_id=user.id,
            username=user.username,
            reason="admin",
        )
        revoked = await self.store.delete_user(user.id, now, audit=[event])
        if revoked is None:
            raise NotFound(f"No user named {username!r}.")
        self._log_audit(event)
        await self._announce(revoked, RevocationReason.USER_DELETED, now, user.id)
        return revoked

    async def _bearer_user(self, claims: AccessClaims) -> User:
        """The live user behind an access token whose session is live (else 401)."""
        session = await self.store.get_session(claims.get("sid", ""))
        if session is None or not session.is_live(self.clock.now()):
            raise RevokedToken()
        user = await self.store.user_by_id(claims["sub"])
        if user is None or user.disabled_at is not None or session.user_id != user.id:
            raise RevokedToken()
        return user

    # --- login, refresh, logout ----------------------------------------------------------

    async def login(self, username: str, password: str, client: ClientInfo) -> TokenPair:
        key = username_key(username)
        account, address = f"account:{key}", f"address:{client.address or '-'}"
        # Throttle per account and per address (ASVS V6.3); unknown accounts alike. Growing
        # delays are per account: an address (a NAT, a proxy: many users) has only its cap,
        # so that one user's typos or a guesser beside them cannot slow everyone down.
        wait = max(
            await self.throttle.retry_after(account, self.limits.account),
            await self.throttle.retry_after(address, self.limits.address, free=self.limits.address),
        )
        if wait:
            raise TooManyRequests(retry_after=wait)
        user = await self.store.user_by_name(key)
        # Unknown users are checked against a dummy hash: same cost, same answer (ASVS V6.3).
        ok, new_hash = await self._off_loop(
            self.hasher.verify, user.password_hash if user else None, password
        )
        if not ok or user is None:
            await self.throttle.failed(account)
            await self.throttle.failed(address)
            self.events.login(ok=False)
            # Unknown account: not even the name typed is kept (it may be a password).
            await self._record(
                AuditEvent(
                    at=self.clock.now(),
                    kind=AuditKind.LOGIN_FAILED,
                    user_id=user.id if user else None,
                    username=user.username if user else None,
                    address=client.address,
                    user_agent=client.user_agent,
                    reason="wrong_password" if user else "unknown_user",
                )
            )
            raise InvalidCredentials()
        await self.throttle.reset(account)
        if user.disabled_at is not None:
            # Only now, with the right password, does the caller learn the account is
            # disabled: a guesser still sees the one invalid_grant answer.
            self.events.login(ok=False)
            await self._record(
                AuditEvent(
                    at=self.clock.now(),
                    kind=AuditKind.LOGIN_FAILED,
                    user_id=user.id,
                    username=user.username,
                    address=client.address,
                    user_agent=client.user_agent,
                    reason="user_disabled",
                )
            )
            raise AccountDisabled()
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
        event = AuditEvent(
            at=now,
            kind=AuditKind.LOGIN_OK,
            user_id=user.id,
            username=user.username,
            sid=session.sid,
            address=client.address,
            user_agent=session.user_agent,
        )
        await self.store.add_session(session, audit=[event])
        self.events.login(ok=True)
        self._log_audit(event)
        return self._pair(session, token, now)

    async def refresh(
        self, refresh_token: object, client: ClientInfo | None = None, *, scope: str | None = None
    ) -> TokenPair:
        """Rotate. With ``scope``, the new access token carries only those of the session's
        scopes (RFC 6749 §6 down-scoping); the session keeps the scope granted at login."""
        presented = self._codec.decode(refresh_token)  # forged/tampered: rejected, no lookup
        client = client or ClientInfo()
        now = self.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.REFRESH,
            address=client.address,
            user_agent=client.user_agent,
        )
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
            ),
            audit=event if self.housekeeping.audit_refreshes else None,
        )
        if session is None:
            session, successor = await self._after_failed_rotation(presented, now, client)
        else:
            self.events.refresh("rotated")
            self._log_audit(
                dataclasses.replace(event, user_id=session.user_id, sid=session.sid),
                level=logging.DEBUG,
            )
        return self._pair(session, successor, now, scope=scope)

    async def _after_failed_rotation(
        self, presented: RefreshToken, now: float, client: ClientInfo
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
            detected = AuditEvent(
                at=now,
                kind=AuditKind.REUSE_DETECTED,
                user_id=session.user_id,
                sid=session.sid,
                address=client.address,
                user_agent=client.user_agent,
                reason=f"generation {presented.generation} of {session.generation}",
            )
            await self._record(detected, level=logging.WARNING)
            await self._revoke(session.sid, RevocationReason.REUSE_DETECTED, client)
            raise RefreshTokenReused()
        if outcome is Outcome.REVOKED:
            assert session is not None
            self.events.refresh("revoked")
            user = await self.store.user_by_id(session.user_id)
            if user is not None and user.disabled_at is not None:
                raise AccountDisabled()  # its own code: the client stops, no refresh loop
            raise SessionRevoked()
        if outcome is Outcome.EXPIRED:
            self.events.refresh("expired")
            raise RefreshTokenExpired()
        self.events.refresh("invalid")
        raise RefreshTokenInvalid()

    async def _revoke(
        self,
        sid: str,
        reason: RevocationReason,
        client: ClientInfo | None = None,
        *,
        user_id: str | None = None,
    ) -> bool:
        """Revoke in the store (the truth), then announce it so that every instance's guard
        rejects the session's access tokens until the last of them has expired. With
        ``user_id``, only a session of that user; ``False`` if there was none to revoke."""
        now = self.clock.now()
        client = client or ClientInfo()
        event = AuditEvent(
            at=now,
            kind=AuditKind.SESSION_REVOKED,
            address=client.address,
            user_agent=client.user_agent,
            reason=reason.value,
        )
        revoked = await self.store.revoke_session(
            sid, reason.value, now, user_id=user_id, audit=event
        )
        if revoked:
            self.events.revoked(reason)
            self._log_audit(dataclasses.replace(event, sid=sid, user_id=user_id))
        if revoked or user_id is None:
            await self.revocations.publish(sid, now + self.access.ttl)
        return revoked

    async def _announce(
        self, sids: list[str], reason: RevocationReason, now: float, user_id: str
    ) -> None:
        """Publish sessions revoked in the store (many at once) and log each."""
        for sid in sids:
            self.events.revoked(reason)
            self._log_audit(
                AuditEvent(
                    at=now,
                    kind=AuditKind.SESSION_REVOKED,
                    user_id=user_id,
                    sid=sid,
                    reason=reason.value,
                )
            )
            await self.revocations.publish(sid, now + self.access.ttl)

    # --- audit ---------------------------------------------------------------------------

    def _log_audit(self, event: AuditEvent, level: int = logging.INFO) -> None:
        audit_log.log(level, event.kind.value, extra=event.log_fields())

    async def _record(self, event: AuditEvent, level: int = logging.INFO) -> None:
        """An event that changes nothing else: its own row, and its log line."""
        self._log_audit(event, level)
        await self.store.add_audit([event])

    async def audit_trail(
        self, *, username: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditEvent]:
        user_id = await self._audit_user_id(username) if username else None
        return await self.store.list_audit(user_id=user_id, since=since, limit=limit)

    async def _audit_user_id(self, username: str) -> str:
        """The id of a user, or of a deleted user by the name recorded when it was deleted."""
        try:
            return (await self.user_named(username)).id
        except NotFound:
            key = username_key(username)
            for event in await self.store.list_audit(kind=AuditKind.USER_DELETED, limit=10_000):
                if event.user_id and event.username and username_key(event.username) == key:
                    return event.user_id
            raise

    # --- sessions ------------------------------------------------------------------------

    async def sessions_of(self, claims: AccessClaims) -> list[SessionView]:
        """``GET /auth/sessions``: the caller's live sessions, the caller's own marked."""
        user = await self._bearer_user(claims)
        now = self.clock.now()
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
            for s in await self.store.list_sessions(user.id, live_at=now)
        ]

    async def end_own_session(self, claims: AccessClaims, sid: str, client: ClientInfo) -> None:
        """``DELETE /auth/sessions/{sid}``: only the caller's own live sessions; anything
        else is a 404, whether it exists or not (no probing of other users' ids)."""
        user = await self._bearer_user(claims)
        if len(sid) != 2 * SID_BYTES or not all(ch in "0123456789abcdef" for ch in sid):
            # Never one of our ids: no query (PostgreSQL refuses text with NUL, a 503).
            raise NotFound("No such session.")
        reason = (
            RevocationReason.LOGOUT if sid == claims["sid"] else RevocationReason.REVOKED_BY_USER
        )
        if not await self._revoke(sid, reason, client, user_id=user.id):
            raise NotFound("No such session.")

    async def logout_all(self, claims: AccessClaims, client: ClientInfo) -> int:
        """``POST /auth/logout-all``: every session of the caller's user, the caller's too."""
        user = await self._bearer_user(claims)
        now = self.clock.now()
        template = AuditEvent(
            at=now,
            kind=AuditKind.SESSION_REVOKED,
            user_id=user.id,
            address=client.address,
            user_agent=client.user_agent,
        )
        revoked = await self.store.revoke_user_sessions(
            user.id, RevocationReason.LOGOUT_ALL.value, now, audit=template
        )
        await self._announce(revoked, RevocationReason.LOGOUT_ALL, now, user.id)
        return len(revoked)

    async def list_sessions(
        self, username: str | None = None, *, include_ended: bool = False
    ) -> list[Session]:
        """For administrators: sessions of one user or of everyone, newest use first."""
        user_id = (await self.user_named(username)).id if username else None
        live_at = None if include_ended else self.clock.now()
        return await self.store.list_sessions(user_id, live_at=live_at)

    async def revoke_session(self, sid: str) -> bool:
        """``latchkey sessions revoke SID``; ``False`` if it was revoked already."""
        if await self._revoke(sid, RevocationReason.ADMIN, user_id=None):
            return True
        if await self.store.get_session(sid) is None:
            raise NotFound("No such session.")
        return False

    async def revoke_sessions_of(self, username: str) -> list[str]:
        """``latchkey sessions revoke --user USERNAME``."""
        user = await self.user_named(username)
        now = self.clock.now()
        template = AuditEvent(at=now, kind=AuditKind.SESSION_REVOKED, user_id=user.id)
        revoked = await self.store.revoke_user_sessions(
            user.id, RevocationReason.ADMIN.value, now, audit=template
        )
        await self._announce(revoked, RevocationReason.ADMIN, now, user.id)
        return revoked

    # --- background work -----------------------------------------------------------------

    async def sync_revocations(self) -> int:
        """Add sessions revoked in the store (by any process: another instance, the CLI)
        to this process's deny-list; how many were new. Run every second or so: with it,
        a revocation reaches every guard without Redis, one indexed query per interval."""
        now = self.clock.now()
        ttl = self.access.ttl
        # A fresh process starts one access-token lifetime back (it learns every revocation
        # whose tokens may still be out there), then goes on from the newest one seen, with
        # an overlap for other processes' clocks a little behind ours and slow commits.
        cursor = now - ttl if self._revocations_seen is None else self._revocations_seen
        added = 0
        denied = self.revocations.local
        for sid, revoked_at in await self.store.revoked_since(cursor - _FEED_OVERLAP):
            until = revoked_at + ttl
            if until > now and sid not in denied:
                denied.add(sid, until)
                added += 1
            cursor = max(cursor, revoked_at)
        self._revocations_seen = cursor
        return added

    async def purge(self) -> int:
        """Delete one batch of dead sessions and old audit events (called in a loop by the
        server: storage cleans itself, no cron job). A session row is kept one access-token
        lifetime past its revocation or expiry, for the deny-list feed and for a clear
        "revoked" answer to late refreshes."""
        now = self.clock.now()
        return await self.store.purge(
            sessions_before=now - self.access.ttl,
            audit_before=now - self.housekeeping.audit_retention,
            batch=self.housekeeping.purge_batch,
        )

    def _pair(
        self, session: Session, token: RefreshToken, now: float, *, scope: str | None = None
    ) -> TokenPair:
        granted = session.scope
        if scope is not None:  # never more than the session's, whatever was asked
            wanted = set(scope.split())
            granted = " ".join(s for s in session.scope.split() if s in wanted)
        access = self.access.issue(
            subject=session.user_id,
            sid=session.sid,
            scope=granted,
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
            scope=granted,
        )

    def parse_refresh_token(self, refresh_token: object) -> RefreshToken:
        """Parse and authenticate (MAC) a refresh token, with no lookup and no side effect;
        :class:`RefreshTokenInvalid` for anything the server never issued."""
        return self._codec.decode(refresh_token)

    async def logout_with_refresh_token(
        self, refresh_token: object, client: ClientInfo | None = None
    ) -> None:
        # Any genuine token of the session ends it; logging out twice is not an error.
        presented = self._codec.decode(refresh_token)
        await self._revoke(presented.sid, RevocationReason.LOGOUT, client)

    async def logout_with_access_token(
        self, claims: AccessClaims, client: ClientInfo | None = None
    ) -> None:
        await self._revoke(claims["sid"], RevocationReason.LOGOUT, client)

    # --- access tokens -------------------------------------------------------------------

    def verify_access_token(self, token: str) -> AccessClaims:
        return self.verifier.verify(token)

    async def me(self, claims: AccessClaims) -> dict[str, Any]:
        """The caller's identity; also confirms the session is still live."""
        user = await self._bearer_user(claims)
        return {
            "sub": user.id,
            "username": user.username,
            "sid": claims["sid"],
            "scope": claims.get("scope", ""),
            "exp": claims["exp"],
        }

    def jwks(self) -> dict[str, Any]:
        return self.keys.to_jwks()
