"""``require_token``: a dependency for FastAPI and a helper for Starlette endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..core.errors import InsufficientScope, InvalidToken
from ..core.verifier import AccessClaims, Verifier, require_scopes
from .asgi import CLAIMS_KEY
from .bearer import bearer_token, challenge

VERIFIER_STATE = "latchkey_verifier"


def require_token(
    scopes: Iterable[str] = (), verifier: Verifier | None = None
) -> Callable[[Request], Awaitable[AccessClaims]]:
    """Return ``async (request) -> claims`` that raises 401/403 ``HTTPException`` on failure.

    FastAPI: ``claims: AccessClaims = Depends(require_token(scopes=["read"]))``.
    Starlette: ``claims = await require_token(["read"])(request)`` inside an endpoint.
    The verifier is the one given, else ``app.state.latchkey_verifier``; claims already put in
    the scope by :class:`BearerAuthMiddleware` are reused.
    """
    required = tuple(scopes)

    async def dependency(request: Request) -> AccessClaims:
        claims: AccessClaims | None = request.scope.get(CLAIMS_KEY)
        try:
            if claims is None:
                active = verifier or getattr(request.app.state, VERIFIER_STATE)
                claims = active.verify(bearer_token(request.headers.get("authorization")))
                request.scope[CLAIMS_KEY] = claims
            require_scopes(claims, required)
        except (InvalidToken, InsufficientScope) as error:
            raise HTTPException(
                error.status_code,
                detail=error.description,
                headers={"WWW-Authenticate": challenge(error)},
            ) from None
        return claims

    return dependency
