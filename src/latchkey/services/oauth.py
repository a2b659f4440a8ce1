"""The standard OAuth endpoints over the service, and the clients that may introspect.

- the refresh grant of the token endpoint (RFC 6749 §6): :meth:`TokenService.refresh` itself,
  so the session rules of ``/auth/refresh`` (rotation, grace window, reuse detection) hold
  unchanged; only the errors are the token endpoint's (400 ``invalid_grant``, §5.2);
- revocation (RFC 7009): a refresh or an access token ends its session;
- introspection (RFC 7662) for registered resource servers, which authenticate with a
  client secret (RFC 6749 §2.3.1).

Deliberately absent: the authorization endpoint (authorization code flow) and the password
grant (RFC 9700 §2.4: MUST NOT be used); users log in at ``/auth/login``. Clients of the token
and revocation endpoints are public (RFC 6749 §2.1): no client authentication there.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from ..core.audit import AuditEvent, AuditKind
from ..core.clients import Client, is_client_id, new_client, secret_matches
from ..core.errors import (
    AccountDisabled,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    NotFound,
    RefreshTokenInvalid,
    RejectedGrant,
)
from ..core.refresh import PREFIX as REFRESH_PREFIX
from ..store.protocol import ClientStore, SessionStore
from .access import TokenPair
from .context import ClientInfo, Context
from .lookup import Liveness
from .tokens import TokenService

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), joined by single spaces.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
INACTIVE: dict[str, Any] = {"active": False}  # RFC 7662 §2.2: nothing more for such a token


def requested_scopes(scope: str) -> frozenset[str]:
    """The scopes of a ``scope`` parameter; :class:`InvalidScope` if it is malformed."""
    if _SCOPE.fullmatch(scope) is None:
        raise InvalidScope("The scope parameter is malformed (RFC 6749 §3.3).")
    return frozenset(scope.split(" "))


class OAuthService:
    """What the ``/oauth/*`` routes and ``latchkey clients`` ask of the service."""

    def __init__(
        self,
        *,
        tokens: TokenService,
        sessions: SessionStore,
        clients: ClientStore,
        context: Context,
        liveness: Liveness,
        issuer: str,
    ) -> None:
        self._tokens = tokens
        self._sessions = sessions
        self._clients = clients
        self._context = context
        self._liveness = liveness
        self._issuer = issuer

    # --- RFC 6749 §6: the refresh grant --------------------------------------------------

    async def refresh_grant(
        self, refresh_token: str, scope: str | None, client: ClientInfo
    ) -> TokenPair:
        """Rotate like ``/auth/refresh``. A ``scope`` may name fewer scopes than the session
        has — the new access token then carries only those — but never one more: that is
        ``invalid_scope``, decided before anything changes (RFC 6749 §6)."""
        try:
            if scope is not None:
                wanted = requested_scopes(scope)
                presented = self._tokens.parse_refresh_token(refresh_token)
                session = await self._sessions.get_session(presented.sid)
                # Without a session, the refresh below answers invalid_grant.
                if session is not None and not wanted <= set(session.scope.split()):
                    raise InvalidScope()
            return await self._tokens.refresh(refresh_token, client, scope=scope)
        except (InvalidGrant, AccountDisabled) as exc:
            # RFC 6749 §5.2: 400 invalid_grant for an invalid, expired, revoked or reused
            # refresh token, and for a disabled account (the grant's owner is gone).
            raise RejectedGrant(exc.description) from exc

    # --- RFC 7009: revocation ------------------------------------------------------------

    async def revoke(self, token: str, client: ClientInfo) -> None:
        """End the session of a refresh or access token. A token that is invalid, expired or
        of an ended session changes nothing, silently (RFC 7009 §2.2)."""
        if token.startswith(REFRESH_PREFIX):
            try:
                self._tokens.parse_refresh_token(token)
            except RefreshTokenInvalid:
                return
            # Any genuine token of the session, old generations too, ends it.
            await self._tokens.logout_with_refresh_token(token, client)
            return
        try:
            claims = self._tokens.verify_access_token(token)
        except InvalidToken:
            return
        await self._tokens.logout_with_access_token(claims, client)

    # --- RFC 7662: introspection ---------------------------------------------------------

    async def authenticate(self, client_id: str, secret: str) -> Client:
        """The registered client with this secret, or :class:`InvalidClient` (RFC 6749
        §2.3.1); unknown ids and wrong secrets take the same path and the same time."""
        client = await self._clients.client_by_id(client_id) if is_client_id(client_id) else None
        if not secret_matches(client, secret):
            raise InvalidClient()
        assert client is not None
        return client

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2: ``{"active": false}`` for anything invalid, expired or of an ended
        session (the session row is read, not only this process's deny-list); otherwise the
        token's claims. Introspection has no side effect: an old refresh token presented
        here is only inactive, never reuse."""
        if token.startswith(REFRESH_PREFIX):
            return await self._introspect_refresh(token)
        return await self._introspect_access(token)

    async def _introspect_access(self, token: str) -> dict[str, Any]:
        try:
            claims = self._tokens.verify_access_token(token)  # also the deny-list
        except InvalidToken:
            return dict(INACTIVE)
        sid = claims.get("sid")
        live = await self._liveness.live(sid, claims["sub"]) if sid else None
        if live is None:
            return dict(INACTIVE)
        _, user = live
        answer: dict[str, Any] = {
            "active": True,
            "scope": claims.get("scope", ""),
            "client_id": claims.get("client_id"),
            "username": user.username,
            "token_type": "Bearer",
            "exp": claims["exp"],
            "iat": claims["iat"],
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "jti": claims["jti"],
            "sid": sid,
        }
        return {name: value for name, value in answer.items() if value is not None}

    async def _introspect_refresh(self, token: str) -> dict[str, Any]:
        try:
            presented = self._tokens.parse_refresh_token(token)
        except RefreshTokenInvalid:
            return dict(INACTIVE)
        live = await self._liveness.live(presented.sid)
        if live is None:
            return dict(INACTIVE)
        session, user = live
        # Only the current token of the chain is active; an older one is spent.
        if presented.generation != session.generation or not hmac.compare_digest(
            presented.digest, session.current_hash
        ):
            return dict(INACTIVE)
        return {
            "active": True,
            "scope": session.scope,
            "username": user.username,
            "exp": int(session.expires_at()),
            "iat": int(session.rotated_at or session.created_at),
            "sub": user.id,
            "iss": self._issuer,
            "sid": session.sid,
        }

    # --- registered clients (`latchkey clients …`) ---------------------------------------

    async def add_client(self, name: str) -> tuple[Client, str]:
        """Register a client; its secret is in the return value and nowhere else."""
        now = self._context.clock.now()
        client, secret = new_client(name, now)
        event = AuditEvent(at=now, kind=AuditKind.CLIENT_ADDED, reason=f"client {client.id}")
        await self._clients.add_client(client, audit=[event])
        self._context.audit.log(event)
        return client, secret

    async def list_clients(self) -> list[Client]:
        return await self._clients.list_clients()

    async def remove_client(self, client_id: str) -> None:
        event = AuditEvent(
            at=self._context.clock.now(),
            kind=AuditKind.CLIENT_REMOVED,
            reason=f"client {client_id}",
        )
        if not is_client_id(client_id) or not await self._clients.remove_client(
            client_id, audit=[event]
        ):
            raise NotFound("No client with this id.")
        self._context.audit.log(event)
