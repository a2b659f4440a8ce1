"""Form bodies of the OAuth endpoints (``application/x-www-form-urlencoded``, RFC 6749
Appendix B): size-limited like JSON bodies, strict about repeats, validated into models."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from ..core.errors import InvalidRequest
from .bodies import read_limited

FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 64


class _Form(BaseModel):
    # Unknown parameters are ignored (RFC 6749 §3.1, §3.2).
    model_config = ConfigDict(strict=True, extra="ignore", hide_input_in_errors=True)


class TokenForm(_Form):
    """``POST /oauth/token`` (RFC 6749 §6). No client authentication: latchkey's clients are
    public; a ``client_id`` sent along is ignored."""

    grant_type: Literal["refresh_token"]
    refresh_token: str = Field(min_length=1, max_length=1024)
    scope: str | None = Field(default=None, max_length=1024)


class RevokeForm(_Form):
    """``POST /oauth/revoke`` (RFC 7009 §2.1). The hint is accepted and not needed: both kinds
    of token tell themselves apart."""

    token: str = Field(min_length=1)  # any length: an invalid token is still a 200
    token_type_hint: str | None = None


class IntrospectForm(_Form):
    """``POST /oauth/introspect`` (RFC 7662 §2.1); client credentials in the Authorization
    header (``client_secret_basic``) or here (``client_secret_post``)."""

    token: str = Field(min_length=1)
    token_type_hint: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class OAuthTokenResponse(BaseModel):
    """RFC 6749 §5.1, plus latchkey's ``refresh_expires_in``."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str | None = Field(default=None, description="Omitted when the token has no scope")


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2. Only ``active`` when the token is not active."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    token_type: str | None = Field(default=None, description="Bearer, for access tokens")
    exp: int | None = None
    iat: int | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    jti: str | None = None
    sid: str | None = None


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The parameters of a form body. Parameters without a value count as omitted, and a
    parameter given twice is refused (RFC 6749 §3.2), even if one of them is empty."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise InvalidRequest(f"The request body must be a form (Content-Type: {FORM}).")
    body = await read_limited(request, limit)
    try:
        # Percent-encoded ASCII, UTF-8 underneath (RFC 6749 Appendix B).
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:  # not ASCII, bad UTF-8 under the escapes, too many fields
        raise InvalidRequest("The request body is not a valid form.") from None
    form: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise InvalidRequest(f"{name}: the parameter is repeated.")
        seen.add(name)
        if value:
            form[name] = value
    return form
