"""A Flask decorator that requires a valid bearer token: ``@require_token(verifier)``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import g, jsonify, request

from ..core.verifier import Verifier, require_scopes
from .bearer import REFUSALS, bearer_token, refusal_body, refusal_headers

F = TypeVar("F", bound=Callable[..., Any])


def require_token(
    verifier: Verifier, scopes: Iterable[str] = (), *, max_age: int | None = None
) -> Callable[[F], F]:
    """Claims of a valid token are in ``flask.g.latchkey_claims``; else an OAuth-style JSON
    refusal: 401 or 403 with an RFC 6750 challenge, 503 with ``Retry-After`` when the keys
    cannot be had now (the request waits at most the verifier's ``refresh_deadline``).
    ``max_age``: the user must have signed in (or proved it again) at most that many seconds
    ago, else 401 ``insufficient_user_authentication`` with ``max_age`` (RFC 9470 §3)."""
    required = tuple(scopes)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                claims = verifier.verify(bearer_token(request.headers.get("Authorization")))
                require_scopes(claims, required)
                if max_age is not None:
                    verifier.require_recent_login(claims, max_age)
            except REFUSALS as error:
                response = jsonify(refusal_body(error))
                response.status_code = error.status_code
                response.headers.update(refusal_headers(error))
                return response
            g.latchkey_claims = claims
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
