"""Form bodies of the OAuth endpoints (``application/x-www-form-urlencoded``, RFC 6749
Appendix B): size-limited like JSON bodies, strict about repeats, validated into models."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request

from ..core.errors import InvalidRequest
from .bodies import Reply, read_limited

FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 64


# Every parameter is one string, sent at most once (RFC 6749 §3.1, §3.2); unknown ones are
# ignored. A parameter without a value counts as omitted.
_ONE_STRING_EACH: JsonDict = {"additionalProperties": {"type": "string"}}

# A value may be left out, but a form cannot say null: the document says string only.
Omitted = SkipJsonSchema[None]


class _Form(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="ignore", hide_input_in_errors=True, json_schema_extra=_ONE_STRING_EACH
    )


class TokenForm(_Form):
    """``POST /oauth/token`` (RFC 6749 §6). No client authentication: latchkey's clients are
    public; a ``client_id`` sent along is ignored."""

    grant_type: Literal["refresh_token"]
    refresh_token: str = Field(min_length=1, max_length=1024)
    scope: str | Omitted = Field(default=None, max_length=1024)


class RevokeForm(_Form):
    """``POST /oauth/revoke`` (RFC 7009 §2.1). The hint is accepted and not needed: both kinds
    of token tell themselves apart."""

    token: str = Field(min_length=1)  # any length: an invalid token is still a 200
    token_type_hint: str | Omitted = None


class IntrospectForm(_Form):
    """``POST /oauth/introspect`` (RFC 7662 §2.1); client credentials in the Authorization
    header (``client_secret_basic``) or here (``client_secret_post``), one method at a time
    (RFC 6749 §2.3): with HTTP Basic, no ``client_secret`` here (a ``client_id`` sent along
    must be the same); without it, both here."""

    model_config = ConfigDict(
        json_schema_extra={
            **_ONE_STRING_EACH,
            "oneOf": [
                {"title": "client_secret_post", "required": ["client_id", "client_secret"]},
                {"title": "client_secret_basic", "not": {"required": ["client_secret"]}},
            ],
        }
    )

    token: str = Field(min_length=1)
    token_type_hint: str | Omitted = None
    client_id: str | Omitted = None
    client_secret: str | Omitted = None


class OAuthTokenResponse(Reply):
    """RFC 6749 §5.1, plus latchkey's ``refresh_expires_in``."""

    omit_none = True

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str | Omitted = Field(default=None, description="Omitted when the token has no scope")


class IntrospectionResponse(Reply):
    """RFC 7662 §2.2. Only ``active`` when the token is not active; a claim the token does not
    have is left out."""

    omit_none = True

    active: bool
    scope: str | Omitted = None
    client_id: str | Omitted = None
    username: str | Omitted = None
    token_type: Literal["Bearer"] | Omitted = Field(
        default=None, description="Bearer, for access tokens"
    )
    exp: int | Omitted = None
    iat: int | Omitted = None
    sub: str | Omitted = None
    aud: str | Omitted = None
    iss: str | Omitted = None
    jti: str | Omitted = None
    sid: str | Omitted = None


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
