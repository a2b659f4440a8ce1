"""Strict, fast verification of latchkey access tokens.

``Verifier.verify(token)`` is pure and synchronous, so any framework can call it. It is a thin
layer over ``cryptography``: one pass that parses and checks at once, with the parsed header
of each key cached, so its cost stays close to the raw signature check (see
docs/benchmarks.md). What it enforces, with references:

- size limit before any parsing (RFC 8725 §3.11 spirit; docs/design.md §3);
- exactly three canonical base64url segments (RFC 7515 §7.1, §2);
- header: only ``alg``, ``kid``, ``typ`` allowed — ``crit``, ``jku``, ``x5u``, ``x5c``,
  ``jwk``, ``b64`` and anything else is refused (RFC 8725 §3.10, RFC 7515 §4.1.11);
- ``kid`` must name a known key and ``alg`` must equal that key's pinned algorithm: the
  algorithm is never taken from the token, so ``none`` and HS256-with-a-public-key cannot
  work (RFC 8725 §2.1, §3.1);
- ``typ`` must be ``at+jwt`` (RFC 9068 §4, RFC 8725 §3.11);
- the signature is checked before the payload is parsed;
- claims: exact ``iss``, ``aud`` (RFC 7519 §4.1.3), numeric ``exp``/``iat``/``nbf``
  (RFC 7519 §2 NumericDate; strings and booleans refused) with leeway 0 by default,
  ``exp - iat`` no longer than the longest lifetime the issuer uses, required ``sub`` and
  ``jti`` (RFC 9068 §2.2); duplicate header members are refused (RFC 7515 §5.2);
- optionally, a revocation deny-list: the token's ``sid`` (one revoked session), or its
  ``sub`` and ``iat`` (every session of a user ended at once, core/epochs.py).
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypedDict, runtime_checkable

import orjson

from .b64 import Base64Error, b64url_decode_bytes
from .clock import Clock, SystemClock
from .errors import (
    BadSignature,
    ExpiredToken,
    ForbiddenHeader,
    ImmatureToken,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidClaims,
    KeyPending,
    MalformedToken,
    RevokedToken,
    WrongAudience,
    WrongIssuer,
)
from .keys import VerificationKey
from .keysets import KeySource, RefreshingKeySource, StaticKeySet

MAX_TOKEN_LENGTH = 8192
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §4
_HEADER_CACHE_SIZE = 64


class AccessClaims(TypedDict, total=False):
    """The claims of a verified latchkey access token (RFC 9068 §2.2)."""

    iss: str
    sub: str
    aud: str | list[str]
    exp: int
    iat: int
    nbf: int
    jti: str
    client_id: str
    sid: str
    scope: str
    auth_time: int


@runtime_checkable
class DenyList(Protocol):
    """Revocations a verifier consults (e.g. :class:`latchkey.adapters.revocations.LocalDenyList`,
    :class:`latchkey.guard.denylist.RedisDenyList`); called with verified claims only."""

    def refuses(self, sub: object, sid: object, iat: float) -> bool: ...


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


# The header is parsed before the signature is checked: duplicate members are refused
# (RFC 7515 §5.2). The payload is parsed only after the signature verified, with the
# lexically-last-member rule that RFC 7519 §4 allows (orjson). Neither accepts NaN.
_HEADER_JSON = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_reject_constant)


def _decode_header(segment: bytes) -> dict[str, Any]:
    try:
        text = b64url_decode_bytes(segment).decode("utf-8")
        value, end = _HEADER_JSON.raw_decode(text)  # no whitespace around the object
    except (Base64Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedToken() from exc
    if type(value) is not dict or end != len(text):
        raise MalformedToken()
    return value


# RFC 7519 §2 NumericDate: a JSON number. bool is an int subclass in Python: refuse it.
_NUMERIC = frozenset({int, float})


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The token's scopes: ``scope`` is space-delimited (RFC 8693 §4.2, RFC 9068 §2.2.3)."""
    scope = claims.get("scope")
    return frozenset(scope.split()) if isinstance(scope, str) else frozenset()


def require_scopes(claims: Mapping[str, Any], required: Iterable[str]) -> None:
    missing = set(required) - scopes_of(claims)
    if missing:
        raise InsufficientScope()


def require_recent_login(claims: Mapping[str, Any], max_age: int, now: float) -> None:
    """Refuse (:class:`InsufficientUserAuthentication`) unless the user proved who they are
    (``auth_time``, RFC 9068 §2.2.1, OIDC Core §2) at most ``max_age`` seconds before ``now``
    (RFC 9470 §3). A token without a numeric ``auth_time`` is never recent enough."""
    auth_time: Any = claims.get("auth_time")
    if type(auth_time) not in _NUMERIC or now - auth_time > max_age:
        raise InsufficientUserAuthentication(max_age)


class Verifier:
    """Checks access tokens offline against known keys. Thread-safe; create one and reuse it."""

    def __init__(
        self,
        keys: KeySource | Iterable[VerificationKey] | Mapping[str, Any],
        *,
        issuer: str,
        audience: str,
        leeway: int = 0,
        max_lifetime: int | None = 3600,
        clock: Clock | None = None,
        revoked_sessions: DenyList | Container[str] | None = None,
    ) -> None:
        """``revoked_sessions``: a :class:`DenyList`, or any ``Container[str]`` of revoked
        session ids (a ``set`` will do)."""
        source: KeySource
        if isinstance(keys, Mapping):
            source = StaticKeySet.from_jwks(keys)
        elif isinstance(keys, StaticKeySet) or hasattr(keys, "get"):
            source = keys  # type: ignore[assignment]
        else:
            source = StaticKeySet(keys)
        self._keys = source
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self._clock = clock or SystemClock()
        self._now = self._clock.now
        self._revoked: DenyList | None = None
        self._revoked_sids: Container[str] | None = None
        if isinstance(revoked_sessions, DenyList):
            self._revoked = revoked_sessions
        else:
            self._revoked_sids = revoked_sessions
        self._headers: dict[
            bytes, tuple[str, str]
        ] = {}  # header segment -> kid, for headers that passed

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], **options: Any) -> Verifier:
        return cls(StaticKeySet.from_jwks(jwks), **options)

    @classmethod
    def from_jwks_file(cls, path: str | Path, **options: Any) -> Verifier:
        return cls(StaticKeySet.from_jwks_file(path), **options)

    @property
    def key_source(self) -> KeySource:
        """Where this verifier finds its keys."""
        return self._keys

    # --- remote key sets: warm start and shutdown (no-ops for fixed keys) ---------------------

    def warm_up(self, timeout: float | None = None) -> bool:
        """Fetch the keys now (a WSGI app's start-up, Django settings): whether they are held.
        Never raises; without keys the guards answer 503 until the background fetch works."""
        source = self._keys
        return source.warm_up(timeout) if isinstance(source, RefreshingKeySource) else True

    async def warm_up_async(self, timeout: float | None = None) -> bool:
        """:meth:`warm_up` in an ASGI lifespan: the background refresh then runs as a task on
        that event loop."""
        source = self._keys
        if isinstance(source, RefreshingKeySource):
            return await source.warm_up_async(timeout)
        return True

    def close(self) -> None:
        """Stop the background refresh of a remote key set (idempotent)."""
        if isinstance(self._keys, RefreshingKeySource):
            self._keys.close()

    async def aclose(self) -> None:
        """:meth:`close` from an event loop."""
        if isinstance(self._keys, RefreshingKeySource):
            await self._keys.aclose()

    def _key_for_header(self, segment: bytes) -> VerificationKey:
        cached = self._headers.get(segment)
        if cached is not None:
            kid, alg = cached
            key = self._keys.get(kid)
            # The key under a kid may change (remote JWKS): the pin is rechecked every time.
            if key is not None and key.alg == alg:
                return key
        header = _decode_header(segment)
        if not header.keys() <= _ALLOWED_HEADER:
            raise ForbiddenHeader()  # crit, jku, x5u, x5c, jwk, b64, ... (RFC 8725 §3.10)
        header_kid = header.get("kid")
        typ = header.get("typ")
        if not isinstance(header_kid, str) or not isinstance(typ, str):
            raise ForbiddenHeader()
        if typ.lower() not in _ACCEPTED_TYP:
            raise ForbiddenHeader()
        key = self._keys.get(header_kid)
        # The key decides the algorithm; the header may only agree with it (RFC 8725 §3.1).
        if key is None or header.get("alg") != key.alg:
            raise ForbiddenHeader()
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = (header_kid, key.alg)
        return key

    def verify(self, token: str) -> AccessClaims:
        """Return the claims of a valid token or raise :class:`~latchkey.InvalidToken`;
        :class:`~latchkey.KeySetUnavailable` when the keys cannot be had now (a remote key
        set: never fetched, too old, or an unknown key id while its URL fails). A thread may
        wait up to ``refresh_deadline`` for an unknown key id; coroutines use
        :meth:`verify_async`."""
        if type(token) is not str or len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken()
        try:
            raw = token.encode("ascii")
            header_segment, payload_segment, signature_segment = raw.split(b".")
            signature = b64url_decode_bytes(signature_segment)
        except (ValueError, Base64Error) as exc:  # not ASCII, not 3 segments, bad base64url
            raise MalformedToken() from exc
        key = self._key_for_header(header_segment)
        if not key.verify(signature, raw[: len(header_segment) + len(payload_segment) + 1]):
            raise BadSignature()
        try:  # the payload, parsed only now that it is authenticated (strict RFC 8259 JSON)
            claims = orjson.loads(b64url_decode_bytes(payload_segment))
        except (Base64Error, orjson.JSONDecodeError) as exc:
            raise MalformedToken() from exc
        if type(claims) is not dict:
            raise MalformedToken()
        self._check_claims(claims)
        if self._revoked is not None:
            if self._revoked.refuses(claims["sub"], claims.get("sid"), claims["iat"]):
                raise RevokedToken()
        elif self._revoked_sids is not None and claims.get("sid") in self._revoked_sids:
            raise RevokedToken()
        return claims  # type: ignore[return-value]

    async def verify_async(self, token: str) -> AccessClaims:
        """:meth:`verify` for coroutines: it never blocks the event loop. When the token names
        a key the source is fetching, the fetch is awaited (at most its ``refresh_deadline``),
        then the token is checked once more. Raises :class:`~latchkey.InvalidToken` or
        :class:`~latchkey.KeySetUnavailable`."""
        try:
            return self.verify(token)
        except KeyPending as pending:
            await pending.wait()
        return self.verify(token)

    def require_recent_login(self, claims: Mapping[str, Any], max_age: int) -> None:
        """:func:`require_recent_login` by this verifier's clock: the user of these verified
        claims signed in (or proved it again) at most ``max_age`` seconds ago."""
        require_recent_login(claims, max_age, self._now())

    def _check_claims(self, claims: dict[str, Any]) -> None:
        # RFC 7519 §4.1.1, §4.1.3: exact issuer; audience equal or listed.
        if claims.get("iss") != self.issuer:
            raise WrongIssuer()
        aud = claims.get("aud")
        if aud != self.audience and not (type(aud) is list and self.audience in aud):
            raise WrongAudience()
        exp: Any = claims.get("exp")
        iat: Any = claims.get("iat")
        # NumericDate is a JSON number (RFC 7519 §2): "exp": "123" or true is refused.
        if type(exp) not in _NUMERIC or type(iat) not in _NUMERIC:
            raise InvalidClaims()
        now = self._now()
        leeway = self.leeway
        if now >= exp + leeway:  # RFC 7519 §4.1.4
            raise ExpiredToken()
        if iat > now + leeway:
            raise ImmatureToken()
        if "nbf" in claims:
            nbf = claims["nbf"]
            if type(nbf) not in _NUMERIC:
                raise InvalidClaims()
            if nbf > now + leeway:  # RFC 7519 §4.1.5
                raise ImmatureToken()
        if self.max_lifetime is not None and exp - iat > self.max_lifetime:  # docs/design.md §3
            raise InvalidClaims()
        sub = claims.get("sub")
        if type(sub) is not str or not sub or type(claims.get("jti")) is not str:
            raise InvalidClaims()  # RFC 9068 §2.2
        if (
            type(claims.get("sid", "")) is not str
            or type(claims.get("scope", "")) is not str
            or type(claims.get("client_id", "")) is not str
        ):
            raise InvalidClaims()
