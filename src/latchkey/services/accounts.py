"""Accounts: creation (by an administrator or by self-registration), passwords, disabling
and deletion. A change that ends sessions ends them in the same transaction (one row: the
user's epoch, core/epochs.py), then announces the user's cutoff to every instance's guard."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from ..adapters.throttle import Throttle
from ..core.audit import AuditEvent, AuditKind
from ..core.errors import NotFound, TooManyRequests, WrongPassword
from ..core.passwords import PasswordHasher
from ..core.policy import PasswordPolicy, normalize_username
from ..core.users import User
from ..core.verifier import AccessClaims
from ..store.protocol import UserStore
from .context import ClientInfo, Context, ThrottleLimits
from .lookup import Liveness, user_named
from .revoker import Revoker


@dataclass(frozen=True)
class UserUpdate:
    """What ``update_user`` did: the user as it is now, its former name if renamed, and the
    sessions whose scope was narrowed."""

    user: User
    renamed_from: str | None
    narrowed: list[str]


class AccountService:
    def __init__(
        self,
        *,
        users: UserStore,
        context: Context,
        hasher: PasswordHasher,
        password_policy: PasswordPolicy,
        throttle: Throttle,
        limits: ThrottleLimits,
        liveness: Liveness,
        revoker: Revoker,
        allow_registration: bool,
    ) -> None:
        self._users = users
        self._context = context
        self._hasher = hasher
        self.password_policy = password_policy
        self._throttle = throttle
        self._limits = limits
        self._liveness = liveness
        self._revoker = revoker
        self.allow_registration = allow_registration

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
        password_hash = await self._context.hashing.run(self._hasher.hash, password)
        now = self._context.clock.now()
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
        await self._users.add_user(user, audit=[event])
        self._context.audit.log(event)
        return user

    async def register(self, username: str, password: str, client: ClientInfo) -> User:
        """``POST /auth/register``: off (404) unless LATCHKEY_ALLOW_REGISTRATION is set;
        throttled per client address like failed logins (ASVS V6.3.1)."""
        if not self.allow_registration:
            raise NotFound()
        address = f"register:{client.address or '-'}"
        wait = await self._throttle.retry_after(address, self._limits.registrations)
        if wait:
            raise TooManyRequests(retry_after=wait)
        await self._throttle.failed(address)  # every attempt counts, made or not
        return await self.add_user(username, password, registered=client)

    async def list_users(self) -> list[User]:
        return await self._users.list_users()

    async def has_users(self) -> bool:
        return await self._users.has_users()

    async def user_named(self, username: str) -> User:
        return await user_named(self._users, username)

    async def set_password(self, username: str, password: str) -> int:
        """Administrator's reset: new password, every session of the user revoked."""
        user = await self.user_named(username)
        return await self._change_password(user, password, keep_sid=None, client=ClientInfo())

    async def change_password(
        self, claims: AccessClaims, current: str, new: str, client: ClientInfo
    ) -> None:
        """``POST /auth/password``: needs a recent login and the current password (ASVS
        V6.2.3); every other session of the user is revoked, the caller's survives (ASVS
        V7.4.3)."""
        user = await self._liveness.recently_authenticated_user(claims)
        account = f"account:{user.key}"
        wait = await self._throttle.retry_after(account, self._limits.account)
        if wait:
            raise TooManyRequests(retry_after=wait)
        ok, _ = await self._context.hashing.run(self._hasher.verify, user.password_hash, current)
        if not ok:
            await self._throttle.failed(account)  # a stolen access token must not help guess
            raise WrongPassword()
        await self._change_password(user, new, keep_sid=claims["sid"], client=client)

    async def _change_password(
        self, user: User, password: str, *, keep_sid: str | None, client: ClientInfo
    ) -> int:
        self.password_policy.check(password, username=user.username)
        password_hash = await self._context.hashing.run(self._hasher.hash, password)
        now = self._context.clock.now()
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
        revocation = await self._users.change_password(
            user.id, password_hash, now, keep_sid=keep_sid, audit=[event]
        )
        if revocation is None:
            raise NotFound(f"No user named {user.username!r}.")
        self._context.audit.log(event)
        await self._revoker.announce(revocation)
        return revocation.sessions

    async def set_disabled(self, username: str, *, disabled: bool) -> int:
        """Disable (every session revoked at once) or enable an account; how many sessions
        were ended."""
        user = await self.user_named(username)
        now = self._context.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.USER_DISABLED if disabled else AuditKind.USER_ENABLED,
            user_id=user.id,
            username=user.username,
            reason="admin",
        )
        done = await self._users.set_user_disabled(user.id, now, disabled=disabled, audit=[event])
        if done is False:
            raise NotFound(f"No user named {username!r}.")
        self._context.audit.log(event)
        if done is True:
            return 0
        await self._revoker.announce(done)
        return done.sessions

    async def delete_user(self, username: str) -> int:
        user = await self.user_named(username)
        now = self._context.clock.now()
        event = AuditEvent(
            at=now,
            kind=AuditKind.USER_DELETED,
            user_id=user.id,
            username=user.username,
            reason="admin",
        )
        revocation = await self._users.delete_user(user.id, now, audit=[event])
        if revocation is None:
            raise NotFound(f"No user named {username!r}.")
        self._context.audit.log(event)
        await self._revoker.announce(revocation)
        return revocation.sessions

    async def update_user(
        self, username: str, *, scope: str | None = None, new_username: str | None = None
    ) -> UserUpdate:
        """Rename and/or set the scope of an account, audited. Sessions keep running: a
        narrowed scope is cut from every live session, so each one's next refresh grants no
        more (its access tokens already issued keep theirs until they expire); a wider scope
        is granted at the next login. A new name is what logins and ``/auth/me`` use
        (docs/sessions.md, "Changing a user")."""
        user = await self.user_named(username)
        name = normalize_username(new_username) if new_username is not None else None
        if name == user.username:
            name = None
        new_scope = " ".join(scope.split()) if scope is not None else None
        changed = [
            what for what, value in (("scope", new_scope), ("username", name)) if value is not None
        ]
        event = AuditEvent(
            at=self._context.clock.now(),
            kind=AuditKind.USER_UPDATED,
            user_id=user.id,
            username=name or user.username,
            reason=f"admin: {' '.join(changed)}" if changed else "admin",
        )
        narrowed = await self._users.update_user(
            user.id, username=name, scope=new_scope, audit=[event]
        )
        if narrowed is None:
            raise NotFound(f"No user named {username!r}.")
        self._context.audit.log(event)
        updated = dataclasses.replace(
            user,
            username=name or user.username,
            scope=user.scope if new_scope is None else new_scope,
        )
        return UserUpdate(updated, user.username if name else None, narrowed)
