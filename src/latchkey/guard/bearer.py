"""Reading a bearer token from an ``Authorization`` header (RFC 6750 §2.1)."""

from __future__ import annotations

import re

from ..core.errors import InvalidToken, LatchkeyError

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
    return f'Bearer realm="{realm}", error="{error.error}"'
