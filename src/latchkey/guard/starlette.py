"""``require_token``: a dependency for FastAPI and a helper for Starlette endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.errors import LatchkeyError
from ..core.verifier import AccessClaims, Verifier, require_scopes
from .asgi import CLAIMS_KEY
from .bearer import REFUSALS, bearer_token, refusal_body, refusal_headers

VERIFIER_STATE = "latchkey_verifier"


class Refused(HTTPException):
    """What ``require_token`` raises: an ``HTTPException`` (so any Starlette or FastAPI app
    answers it with its status and headers) that carries the latchkey error behind it."""

    def __init__(self, error: LatchkeyError) -> None:
        headers = refusal_headers(error)
        super().__init__(error.status_code, detail=error.description, headers=headers)
        self.error = error


async def _oauth_refusal(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return JSONResponse(refusal_body(exc.error), exc.status_code, headers=exc.headers)


exception_handlers: Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    Refused: _oauth_refusal
}
"""Pass to ``FastAPI(exception_handlers=...)`` or ``Starlette(exception_handlers=...)`` so
that ``require_token``'s refusals have the OAuth-style body ``{"error",
"error_description"}`` instead of the framework's own (FastAPI ``{"detail"}``, Starlette
plain text). Status and headers are the same either way."""


def require_token(
    scopes: Iterable[str] = (), verifier: Verifier | None = None, *, max_age: int | None = None
) -> Callable[[Request], Awaitable[AccessClaims]]:
    """Return ``async (request) -> claims`` that raises :class:`Refused` on failure: 401 or
    403 with an RFC 6750 challenge, 503 with ``Retry-After`` when the keys cannot be had now.

    FastAPI: ``claims: AccessClaims = Depends(require_token(scopes=["read"]))``.
    Starlette: ``claims = await require_token(["read"])(request)`` inside an endpoint.
    The verifier is the one given, else ``app.state.latchkey_verifier``; claims already put in
    the scope by :class:`BearerAuthMiddleware` are reused. The check never blocks the event
    loop (:meth:`Verifier.verify_async`).

    ``max_age``: the user must have signed in (or proved it again) at most that many seconds
    ago (the token's ``auth_time``), else 401 ``insufficient_user_authentication`` with
    ``max_age`` in the challenge (RFC 9470 §3): for the operations that need a fresh login.
    """
    required = tuple(scopes)

    def _verifier(request: Request) -> Verifier:
        active: Verifier = verifier or getattr(request.app.state, VERIFIER_STATE)
        return active

    async def dependency(request: Request) -> AccessClaims:
        claims: AccessClaims | None = request.scope.get(CLAIMS_KEY)
        try:
            if claims is None:
                token = bearer_token(request.headers.get("authorization"))
                claims = await _verifier(request).verify_async(token)
                request.scope[CLAIMS_KEY] = claims
            require_scopes(claims, required)
            if max_age is not None:
                _verifier(request).require_recent_login(claims, max_age)
        except REFUSALS as error:
            raise Refused(error) from None
        return claims

    return dependency
