"""Token pairs: the access token a session's refresh issues, and the check of one presented.

Access tokens are JWTs (RFC 9068) signed with the key ring's current key; this process checks
them with the same ring and its deny-list of revoked sessions (docs/design.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.access import AccessTokenIssuer
from ..core.refresh import RefreshToken, RefreshTokenCodec
from ..core.sessions import Session
from ..core.verifier import AccessClaims, Verifier


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = "Bearer"
    scope: str = ""  # the access token's; only /oauth/token tells it (docs/design.md §4)

    def __repr__(self) -> str:
        return (
            f"TokenPair(expires_in={self.expires_in}, refresh_expires_in={self.refresh_expires_in})"
        )


class AccessTokens:
    """Issues pairs for sessions and verifies access tokens for the service's own routes."""

    def __init__(
        self, issuer: AccessTokenIssuer, verifier: Verifier, codec: RefreshTokenCodec
    ) -> None:
        self.issuer = issuer
        self.verifier = verifier
        self._codec = codec

    @property
    def ttl(self) -> int:
        return self.issuer.ttl

    def verify(self, token: str) -> AccessClaims:
        return self.verifier.verify(token)

    def access_only(self, session: Session, now: float) -> dict[str, Any]:
        """A new access token for the session, found live at ``now``, and no refresh token
        (``POST /auth/reauthenticate``): ``{"access_token", "token_type", "expires_in"}``."""
        access = self.issuer.issue(
            subject=session.user_id,
            sid=session.sid,
            scope=session.scope,
            auth_time=session.auth_time,
            at=now,  # when the session was found live: iat is never later (core/epochs.py)
            not_after=session.expires_at(),
        )
        return {"access_token": access.token, "token_type": "Bearer", "expires_in": access.lifetime}

    def pair(
        self, session: Session, token: RefreshToken, now: float, *, scope: str | None = None
    ) -> TokenPair:
        """A new access token for the session beside its refresh token ``token``. With
        ``scope``, only those of the session's scopes (never more, whatever was asked)."""
        granted = session.scope
        if scope is not None:
            wanted = set(scope.split())
            granted = " ".join(s for s in session.scope.split() if s in wanted)
        # The session row knows the token's idle expiry (also for a grace replay, whose
        # successor was fixed at the first refresh) and the absolute cap. The access token
        # ends with the session at the latest: while its signature and the deny-list hold,
        # its session is live (what /auth/me relies on, docs/sessions.md).
        refresh_expires_at = session.expires_at()
        access = self.issuer.issue(
            subject=session.user_id,
            sid=session.sid,
            scope=granted,
            auth_time=session.auth_time,
            at=now,  # when the session was found live: iat is never later (core/epochs.py)
            not_after=refresh_expires_at,
        )
        return TokenPair(
            access_token=access.token,
            expires_in=access.lifetime,
            refresh_token=self._codec.encode(token),
            refresh_expires_in=max(0, int(refresh_expires_at - now)),
            scope=granted,
        )
