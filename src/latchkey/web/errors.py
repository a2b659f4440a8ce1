"""How errors become responses: OAuth-style JSON bodies, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.errors import (
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidClient,
    InvalidToken,
    LatchkeyError,
    ServiceUnavailable,
    TooManyRequests,
)
from ..guard.bearer import challenge

log = logging.getLogger("latchkey.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def error_response(error: LatchkeyError) -> JSONResponse:
    headers = dict(NO_STORE)
    if isinstance(error, InvalidToken | InsufficientScope | InsufficientUserAuthentication):
        headers["WWW-Authenticate"] = challenge(error)  # RFC 6750 §3, RFC 9470 §3
    elif isinstance(error, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="latchkey"'  # RFC 6749 §5.2, RFC 7617
    if isinstance(error, ServiceUnavailable | TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status_code,
        headers=headers,
    )


async def on_latchkey_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LatchkeyError)
    return error_response(exc)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {
            "error": _HTTP_CODES.get(exc.status_code, "invalid_request"),
            "error_description": exc.detail,
        },
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "server_error", "error_description": "The request could not be processed."},
        status_code=500,
    )
