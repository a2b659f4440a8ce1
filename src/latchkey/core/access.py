"""Issuing access tokens: JWTs after RFC 9068 (``typ: at+jwt``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from .b64 import b64url_encode
from .clock import Clock
from .jws import CompactSigner
from .keys import SigningKey

ACCESS_TOKEN_TYP = "at+jwt"


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    expires_at: int
    jti: str
    issued_at: int = 0  # iat

    @property
    def lifetime(self) -> int:
        """Seconds from ``iat`` to ``exp``: the ``expires_in`` to tell the client."""
        return max(0, self.expires_at - self.issued_at)


class SigningKeyProvider(Protocol):
    """Anything that names the key to sign with now (e.g. a :class:`KeyRing`)."""

    @property
    def signing(self) -> SigningKey: ...


class AccessTokenIssuer:
    """Mints access tokens for one issuer and audience, signed with the current key."""

    def __init__(
        self,
        key: SigningKey | SigningKeyProvider,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        clock: Clock,
        client_id: str = "latchkey",
    ) -> None:
        self._keys = key
        self._signer: CompactSigner | None = None
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.client_id = client_id
        self._clock = clock

    @property
    def key(self) -> SigningKey:
        keys = self._keys
        return keys if isinstance(keys, SigningKey) else keys.signing

    def _current_signer(self) -> CompactSigner:
        key = self.key
        signer = self._signer
        if signer is None or signer.key is not key:  # first use, or the ring rotated
            signer = self._signer = CompactSigner(key, ACCESS_TOKEN_TYP)
        return signer

    def issue(
        self,
        *,
        subject: str,
        sid: str,
        scope: str,
        auth_time: int,
        at: float | None = None,
        not_after: float | None = None,
    ) -> IssuedAccessToken:
        """``at``: the instant the session was found live (default: now). ``iat`` is that
        instant in whole seconds, rounded down, so it is never later than the check that let
        the token out (core/epochs.py relies on it). ``not_after``: the session's own expiry;
        the token expires then at the latest (rounded down), so that no access token outlives
        its session."""
        now = int(self._clock.now() if at is None else at)
        exp = now + self.ttl
        if not_after is not None:
            exp = min(exp, int(not_after))
        jti = b64url_encode(secrets.token_bytes(16))
        # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti are required.
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "exp": exp,
            "iat": now,
            "jti": jti,
            "client_id": self.client_id,
            "sid": sid,
            "auth_time": auth_time,
        }
        if scope:  # no empty claim: a user without scopes gets no "scope" (RFC 9068 §2.2.3)
            claims["scope"] = scope
        return IssuedAccessToken(
            token=self._current_signer().sign(claims), expires_at=exp, jti=jti, issued_at=now
        )
