"""Request bodies: size-limited, JSON only, validated into typed models."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request

from ..core.errors import InvalidRequest, RequestTooLarge
from ..core.passwords import MAX_PASSWORD_LENGTH
from ..core.policy import (
    DEFAULT_MAX_PASSWORD_LENGTH,
    DEFAULT_MIN_PASSWORD_LENGTH,
    USERNAME_MAX_LENGTH,
    USERNAME_MIN_LENGTH,
)

M = TypeVar("M", bound=BaseModel)
_DIGITS = re.compile(r"[0-9]{1,15}")


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", hide_input_in_errors=True)


Username = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
# What the service takes for a new account (core/policy.py), in the document: the model leaves
# the check to the policy, whose answers say what is wrong. A new password is also refused
# when it is common or contains the username.
_NEW_USERNAME: JsonDict = {
    "minLength": USERNAME_MIN_LENGTH,
    "maxLength": USERNAME_MAX_LENGTH,
    "pattern": r"^\s*[^\s._@+-][^\s]*\s*$",
    "description": "Letters, digits and . _ - @ +, starting with a letter or a digit",
}
_NEW_PASSWORD: JsonDict = {
    "minLength": DEFAULT_MIN_PASSWORD_LENGTH,
    "maxLength": DEFAULT_MAX_PASSWORD_LENGTH,
    "description": "Not a common password, and not containing the username",
}


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
    username: Username = Field(json_schema_extra=_NEW_USERNAME)
    password: str = Field(
        min_length=1, max_length=MAX_PASSWORD_LENGTH, json_schema_extra=_NEW_PASSWORD
    )


class PasswordChangeRequest(_Body):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(
        min_length=1, max_length=MAX_PASSWORD_LENGTH, json_schema_extra=_NEW_PASSWORD
    )


class ReauthenticateRequest(_Body):
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class Reply(BaseModel):
    """An answer's body. The service's values are checked against it (an unknown field is a
    bug, not something to drop) and serialised through it (web/contract.py ``respond``)."""

    model_config = ConfigDict(extra="forbid")
    omit_none: ClassVar[bool] = False  # True: a field that is None is left out, not null


class AccessTokenResponse(Reply):
    """``POST /auth/reauthenticate``: a new access token of the same session, nothing else."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class RegisterResponse(Reply):
    sub: str
    username: str


class SessionResponse(Reply):
    id: str
    created_at: int
    last_used_at: int
    expires_at: int
    user_agent: str | None
    address: str | None
    current: bool


class SessionsResponse(Reply):
    sessions: list[SessionResponse]


class TokenResponse(Reply):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class CookieTokenResponse(Reply):
    """The token pair of cookie mode: the refresh token is in the cookie only."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_expires_in: int


class MeResponse(Reply):
    sub: str
    username: str
    sid: str
    scope: str
    exp: int


class ErrorResponse(Reply):
    error: str
    error_description: str


class Jwk(Reply):
    """A public key of the JWK Set: RFC 7517 §4 with RFC 7518 §6.2-6.3 (EC, RSA) or RFC 8037
    §2 (OKP) members; named by its RFC 7638 thumbprint."""

    omit_none = True

    kty: Literal["RSA", "EC", "OKP"]
    kid: str
    alg: str
    use: Literal["sig"]
    n: str | SkipJsonSchema[None] = None
    e: str | SkipJsonSchema[None] = None
    crv: Literal["P-256", "Ed25519"] | SkipJsonSchema[None] = None
    x: str | SkipJsonSchema[None] = None
    y: str | SkipJsonSchema[None] = None


class JwkSet(Reply):
    omit_none = True  # the members a key's type does not have are left out

    keys: list[Jwk]


class ServerMetadata(Reply):
    """RFC 8414 §2 metadata, and where latchkey's own endpoints are."""

    issuer: str
    jwks_uri: str
    token_endpoint: str
    token_endpoint_auth_methods_supported: list[str]
    grant_types_supported: list[str]
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    response_types_supported: list[str]
    access_token_signing_alg_values_supported: list[str]
    login_endpoint: str
    refresh_endpoint: str
    logout_endpoint: str
    sessions_endpoint: str
    userinfo_endpoint: str
    service_documentation: str


class Health(Reply):
    status: Literal["ok"]


Check = Literal["ok", "timeout", "unavailable", "not configured"]


class Readiness(Reply):
    status: Literal["ready", "unavailable"]
    checks: dict[str, Check]


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
