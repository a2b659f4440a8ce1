"""Request bodies: size-limited, JSON only, validated into typed models."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ..core.errors import InvalidRequest, RequestTooLarge
from ..core.passwords import MAX_PASSWORD_LENGTH

M = TypeVar("M", bound=BaseModel)
_DIGITS = re.compile(r"[0-9]{1,15}")


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", hide_input_in_errors=True)


Username = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]


class LoginRequest(_Body):
    username: Username  # no control characters (they cannot name anyone)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    # Cookie mode: the refresh token in an HttpOnly cookie, not in the body (docs/browser.md).
    # Absent or null: LATCHKEY_COOKIE_DEFAULT decides.
    cookie: bool | None = None


class RefreshRequest(_Body):
    # Absent (or null): the refresh cookie is used, if the request carries one.
    refresh_token: str | None = Field(default=None, min_length=1, max_length=1024)


class LogoutRequest(_Body):
    refresh_token: str | None = Field(default=None, min_length=1, max_length=1024)


class RegisterRequest(_Body):
    username: Username  # the full rules are the service's (core/policy.py)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class PasswordChangeRequest(_Body):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RegisterResponse(BaseModel):
    sub: str
    username: str


class SessionResponse(BaseModel):
    id: str
    created_at: int
    last_used_at: int
    expires_at: int
    user_agent: str | None
    address: str | None
    current: bool


class SessionsResponse(BaseModel):
    sessions: list[SessionResponse]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class CookieTokenResponse(BaseModel):
    """The token pair of cookie mode: the refresh token is in the cookie only."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_expires_in: int


class MeResponse(BaseModel):
    sub: str
    username: str
    sid: str
    scope: str
    exp: int


class ErrorResponse(BaseModel):
    error: str
    error_description: str


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    _require_json(request)
    return _json_object(await read_limited(request, limit))


async def read_optional_json(request: Request, limit: int) -> dict[str, Any]:
    """Like :func:`read_json`, for routes whose body may be left out: an empty body is ``{}``.
    Whether there is one is known only once it is read: an HTTP/2 request may stream a body
    with neither Content-Length nor Transfer-Encoding (RFC 9113 §8.1)."""
    body = await read_limited(request, limit)
    if not body:
        return {}
    _require_json(request)
    return _json_object(body)


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise InvalidRequest("The request body must be JSON (Content-Type: application/json).")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused (413) once it is past ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if _DIGITS.fullmatch(declared) is None:
            raise InvalidRequest("The Content-Length header is malformed.")
        if int(declared) > limit:
            raise RequestTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge()
    return bytes(body)


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"{field}: {first['msg']}.") from None
