"""Reading a bearer token from an ``Authorization`` header (RFC 6750 §2.1), and what every
guard answers when it refuses a request."""

from __future__ import annotations

import re

from ..core.errors import (
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidToken,
    LatchkeyError,
    ServiceUnavailable,
)

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")


class MissingToken(InvalidToken):
    """No credentials at all: RFC 6750 §3.1 says the challenge then carries no error code."""

    description = "An access token is required."


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise MissingToken()
    authorization = authorization.strip()
    match = _BEARER.fullmatch(authorization)
    if match is None:
        # Another scheme (Basic, …) is "no bearer token"; a broken Bearer value is invalid.
        raise MissingToken() if not authorization.lower().startswith("bearer") else InvalidToken()
    return match[1]


def challenge(error: LatchkeyError, realm: str = "latchkey") -> str:
    """The ``WWW-Authenticate`` value for a failed bearer check (RFC 6750 §3)."""
    if isinstance(error, MissingToken):
        return f'Bearer realm="{realm}"'
    if isinstance(error, InsufficientUserAuthentication):
        # RFC 9470 §3: the error code, a description and the max_age the route needs.
        return (
            f'Bearer realm="{realm}", error="{error.error}", '
            f'error_description="{error.description}", max_age="{error.max_age}"'
        )
    return f'Bearer realm="{realm}", error="{error.error}"'


# What a guard refuses a request for: a bad or missing token (401), a login not recent enough
# (401, RFC 9470), a missing scope (403), or keys it cannot get now (503; a server fault, so
# never 401: the client keeps its session).
REFUSALS = (InvalidToken, InsufficientUserAuthentication, InsufficientScope, ServiceUnavailable)


def refusal_headers(error: LatchkeyError, realm: str = "latchkey") -> dict[str, str]:
    """The headers of a refusal: the RFC 6750 §3 challenge for a token problem, or
    ``Retry-After`` for a 503 (RFC 9110 §10.2.3); never stored by a cache."""
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    else:
        headers["WWW-Authenticate"] = challenge(error, realm)
    return headers


def refusal_body(error: LatchkeyError) -> dict[str, str]:
    """The OAuth-style body of a refusal (RFC 6750 §3.1, RFC 6749 §5.2)."""
    return {"error": error.error, "error_description": error.description}
