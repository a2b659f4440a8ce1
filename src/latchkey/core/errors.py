"""One error tree. Every class carries its OAuth ``error`` code and its HTTP status.

The web layer renders any :class:`LatchkeyError` as
``{"error": e.error, "error_description": e.description}`` with ``e.status_code``
(RFC 6749 §5.2, RFC 6750 §3.1). Subclasses exist for logs and tests; the body a client sees
for a rejected token is the same whichever check failed (docs/design.md §3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class LatchkeyError(Exception):
    """Root of every error latchkey raises on purpose."""

    error: str = "server_error"
    status_code: int = 500
    description: str = "The request could not be processed."

    def __init__(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(self.description)


# --- request shape ---------------------------------------------------------------------------


class InvalidRequest(LatchkeyError):
    """The request is malformed: bad JSON, wrong types, missing fields (RFC 6749 §5.2)."""

    error = "invalid_request"
    status_code = 400
    description = "The request is missing a parameter or is otherwise malformed."


class RequestTooLarge(InvalidRequest):
    status_code = 413
    description = "The request body is too large."


class NotFound(LatchkeyError):
    error = "not_found"
    status_code = 404
    description = "No such resource."


class ServiceUnavailable(LatchkeyError):
    """A dependency failed (database, Redis, the key server): answered 503 with
    ``Retry-After: retry_after`` seconds (RFC 9110 §10.2.3)."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "The service is temporarily unavailable. Try again shortly."

    def __init__(self, description: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = max(1, retry_after)


class KeySetUnavailable(ServiceUnavailable):
    """The keys that would check an access token cannot be had now: never fetched, past
    their hard age limit, or the token names an unknown key while the key server fails.

    A server fault, not a bad token: the guards answer 503 with ``Retry-After``, never 401, so
    a client keeps its session and tries again later (docs/frameworks.md).
    """

    description = "The keys to check the access token cannot be fetched now. Try again shortly."


class KeyPending(KeySetUnavailable):
    """The key source is fetching the keys this token needs: ``await wait()`` (bounded,
    never raises), then ask again. :meth:`latchkey.Verifier.verify_async` does that; a
    caller that does not handle it answers 503 like any :class:`KeySetUnavailable`."""

    def __init__(self, wait: Callable[[], Awaitable[None]], *, retry_after: int = 1) -> None:
        super().__init__(retry_after=retry_after)
        self.wait = wait


class TooManyRequests(LatchkeyError):
    """Too many failed attempts: wait ``retry_after`` seconds (RFC 6585 §4)."""

    error = "too_many_requests"
    status_code = 429
    description = "Too many failed attempts. Try again later."

    def __init__(self, description: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after


# --- grants: login and refresh ---------------------------------------------------------------


class InvalidGrant(LatchkeyError):
    """Credentials or refresh token not accepted (RFC 6749 §5.2 ``invalid_grant``)."""

    error = "invalid_grant"
    status_code = 401
    description = "The credentials or refresh token are invalid, expired or revoked."


class InvalidCredentials(InvalidGrant):
    """Unknown user or wrong password: one class, one body, so neither can be told apart."""

    description = "Invalid username or password."


class RefreshTokenInvalid(InvalidGrant):
    """Malformed, forged or unknown refresh token."""


class RefreshTokenExpired(InvalidGrant):
    """The session passed its idle or absolute expiry."""


class RefreshTokenSuperseded(InvalidGrant):
    """A genuine token, older than the immediately previous one, that was current within the
    grace window: a straggler of a retrying client. Refused; nothing is revoked."""

    description = "This refresh token has been replaced by a newer one."


class SessionRevoked(InvalidGrant):
    """The session was revoked (logout, reuse detected, …)."""


class RefreshTokenReused(SessionRevoked):
    """An older generation was presented outside the grace window: the session is revoked."""


# --- access tokens (RFC 6750 §3.1) -----------------------------------------------------------


class AccountDisabled(LatchkeyError):
    """Login or refresh for a disabled account. Its own code, so that a client stops (shows
    the message) instead of looping 401 → refresh → 401. Given only after the password was
    right, or to the holder of a genuine refresh token: it reveals nothing to a guesser."""

    error = "account_disabled"
    status_code = 403
    description = "This account is disabled."


class CrossSiteRequest(LatchkeyError):
    """A request that carries the refresh cookie, or asks for it at login, without the proof
    that it comes from a page of ours: the X-Latchkey-CSRF header and an allowed origin
    (web/csrf.py). Refused before anything is read, rotated or revoked."""

    error = "access_denied"
    status_code = 403
    description = "Cross-site request refused: send X-Latchkey-CSRF: 1 from an allowed origin."


class WrongPassword(LatchkeyError):
    """The current password given to change it is wrong (a 400, not a 401: the caller's
    access token is fine and must not make a client refresh)."""

    error = "invalid_grant"
    status_code = 400
    description = "The current password is wrong."


class InvalidToken(LatchkeyError):
    """The access token is not acceptable. Same body whatever the reason (docs/design.md §3)."""

    error = "invalid_token"
    status_code = 401
    description = "The access token is invalid or expired."


class MalformedToken(InvalidToken):
    """Not a compact JWS of the accepted shape (segments, base64url, JSON, size)."""


class ForbiddenHeader(InvalidToken):
    """The JOSE header is unacceptable: wrong alg or typ, unknown kid, crit/jku/x5u/jwk…"""


class BadSignature(InvalidToken):
    """The signature does not verify with the key the ``kid`` names."""


class InvalidClaims(InvalidToken):
    """A claim is missing, of the wrong type, or of the wrong value."""


class WrongIssuer(InvalidClaims):
    """``iss`` is not the issuer the verifier expects, character for character."""


class WrongAudience(InvalidClaims):
    """``aud`` neither is nor lists the audience the verifier expects."""


class ExpiredToken(InvalidClaims):
    """``exp`` is in the past."""


class ImmatureToken(InvalidClaims):
    """``nbf`` or ``iat`` is in the future."""


class RevokedToken(InvalidToken):
    """The session the token belongs to has been revoked."""


class InsufficientUserAuthentication(LatchkeyError):
    """The token is valid, but its user proved who they are (``auth_time``) longer ago than
    the operation allows: they sign in again (``POST /auth/reauthenticate``) and retry. The
    challenge names the code and ``max_age`` (RFC 9470 §3); a refresh does not help, since it
    keeps the session's ``auth_time``."""

    error = "insufficient_user_authentication"
    status_code = 401
    description = "A more recent sign-in is required: enter your password again."

    def __init__(self, max_age: int, description: str | None = None) -> None:
        super().__init__(description)
        self.max_age = max_age


class InsufficientScope(LatchkeyError):
    """The token is valid but lacks a scope the route requires (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status_code = 403
    description = "The access token does not carry the required scope."


# --- configuration ---------------------------------------------------------------------------


class ConfigurationError(LatchkeyError):
    """Bad settings or key material; stops start-up."""

    error = "configuration_error"


class SchemaBehind(ConfigurationError):
    """The database schema is not the one this version needs (``latchkey migrate`` brings
    it there); management commands stop with this rather than migrate on their own."""

    def __init__(self, found: str | None, needed: str | None) -> None:
        where = "has no schema yet" if found is None else f"schema is at revision {found}"
        super().__init__(
            f"the database {where}, this version needs {needed}: run `latchkey migrate` first"
        )


class Conflict(LatchkeyError):
    """The resource exists already (e.g. a username)."""

    error = "conflict"
    status_code = 409
    description = "The resource already exists."


# --- the OAuth endpoints (/oauth/token, /oauth/revoke, /oauth/introspect) --------------------


class RejectedGrant(InvalidGrant):
    """``invalid_grant`` as the token endpoint answers it: 400, not 401 (RFC 6749 §5.2). A
    disabled account is one of these there too: §5.2 has no code of its own for it."""

    status_code = 400


class UnsupportedGrantType(LatchkeyError):
    """A ``grant_type`` other than ``refresh_token`` (RFC 6749 §5.2)."""

    error = "unsupported_grant_type"
    status_code = 400
    description = "Only grant_type=refresh_token is supported; log in at /auth/login."


class InvalidScope(LatchkeyError):
    """A requested scope that is malformed or exceeds the session's (RFC 6749 §5.2, §6)."""

    error = "invalid_scope"
    status_code = 400
    description = "The requested scope is malformed or exceeds the scope of the session."


class InvalidClient(LatchkeyError):
    """Client authentication failed: unknown client, wrong secret or none sent (RFC 6749
    §5.2). Same body whatever the reason; the response carries a Basic challenge."""

    error = "invalid_client"
    status_code = 401
    description = "Client authentication failed."
