"""A Flask decorator that requires a valid bearer token: ``@require_token(verifier)``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import g, jsonify, request

from ..core.errors import InsufficientScope, InvalidToken
from ..core.verifier import Verifier, require_scopes
from .bearer import bearer_token, challenge

F = TypeVar("F", bound=Callable[..., Any])


def require_token(verifier: Verifier, scopes: Iterable[str] = ()) -> Callable[[F], F]:
    """Claims of a valid token are in ``flask.g.latchkey_claims``; else 401/403 JSON."""
    required = tuple(scopes)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                claims = verifier.verify(bearer_token(request.headers.get("Authorization")))
                require_scopes(claims, required)
            except (InvalidToken, InsufficientScope) as error:
                response = jsonify(error=error.error, error_description=error.description)
                response.status_code = error.status_code
                response.headers["WWW-Authenticate"] = challenge(error)
                return response
            g.latchkey_claims = claims
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
