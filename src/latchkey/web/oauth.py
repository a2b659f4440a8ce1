"""The OAuth endpoints: ``/oauth/token`` (RFC 6749 §6), ``/oauth/revoke`` (RFC 7009) and
``/oauth/introspect`` (RFC 7662). Form bodies in, JSON out; they only translate HTTP."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..core.clients import Client, parse_basic
from ..core.errors import InvalidClient, InvalidRequest, UnsupportedGrantType
from ..services import OAuthService, TokenPair
from .bodies import ErrorResponse, parse
from .contract import Answer, operation, respond, route
from .errors import NO_STORE
from .forms import (
    FORM,
    IntrospectForm,
    IntrospectionResponse,
    OAuthTokenResponse,
    RevokeForm,
    TokenForm,
    read_form,
)
from .requests import client_of, container_of


def _oauth(request: Request) -> OAuthService:
    return container_of(request).oauth


async def _form(request: Request) -> dict[str, str]:
    return await read_form(request, request.app.state.max_body)


def token_response(pair: TokenPair) -> OAuthTokenResponse:
    """RFC 6749 §5.1; ``scope`` always said when there is one (it may be narrower than the
    session's), omitted when the token has none."""
    return OAuthTokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
        scope=pair.scope or None,
    )


@operation(
    "POST",
    "OAuth token endpoint: grant_type=refresh_token (RFC 6749 §6)",
    description="The rules of /auth/refresh (rotation, grace window, reuse detection) with "
    "OAuth's form body and errors. Public clients: no client authentication; a client_id is "
    "ignored. `scope` may narrow the new access token's scope, never widen it. There is no "
    "password grant: log in at /auth/login.",
    body=TokenForm,
    body_media_type=FORM,
    answers={
        200: Answer("Tokens (RFC 6749 §5.1)", OAuthTokenResponse),
        400: Answer(
            "invalid_request: not a form, a parameter missing or repeated; "
            "unsupported_grant_type; invalid_grant: invalid, expired, revoked or reused refresh "
            "token, or disabled account; invalid_scope",
            ErrorResponse,
        ),
    },
)
async def token(request: Request) -> Response:
    form = await _form(request)
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise InvalidRequest("grant_type: Field required.")
    if grant_type != "refresh_token":  # password login is /auth/login, not a grant here
        raise UnsupportedGrantType()
    body = parse(TokenForm, form)
    pair = await _oauth(request).refresh_grant(body.refresh_token, body.scope, client_of(request))
    return respond(token_response(pair))  # no-store: RFC 6749 §5.1


@operation(
    "POST",
    "Revoke a refresh or access token: its session ends (RFC 7009)",
    description="Public clients: no client authentication. Unknown, invalid or expired tokens "
    "get the same 200 (RFC 7009 §2.2).",
    body=RevokeForm,
    body_media_type=FORM,
    answers={
        200: Answer("Revoked, or nothing to revoke (empty body)"),
        400: Answer("invalid_request: not a form, token missing or repeated", ErrorResponse),
    },
)
async def revoke(request: Request) -> Response:
    body = parse(RevokeForm, await _form(request))
    await _oauth(request).revoke(body.token, client_of(request))
    return Response(status_code=200, headers=NO_STORE)  # RFC 7009 §2.2: whatever the token


async def _authenticated(request: Request, oauth: OAuthService, form: dict[str, str]) -> Client:
    """The calling resource server: ``client_secret_basic`` or ``client_secret_post``, never
    both (RFC 6749 §2.3); none at all is ``invalid_client`` (RFC 7662 §2.1)."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        if "client_secret" in form:
            raise InvalidRequest("Use one client authentication method, not two.")
        client_id, secret = parse_basic(authorization)
        if form.get("client_id", client_id) != client_id:
            raise InvalidRequest("client_id differs from the one in the Authorization header.")
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not secret:
            raise InvalidClient()
    return await oauth.authenticate(client_id, secret)


@operation(
    "POST",
    "Token introspection for resource servers (RFC 7662)",
    description="Needs a registered client's credentials (`latchkey clients add`), by one "
    "method: HTTP Basic (client_secret_basic) or client_id and client_secret in the form "
    "(client_secret_post), never both. Anything invalid, expired or revoked is "
    '`{"active": false}`.',
    body=IntrospectForm,
    body_media_type=FORM,
    security=({"client_basic": ()}, {}),
    answers={
        200: Answer("Introspection", IntrospectionResponse),
        400: Answer(
            "invalid_request: not a form, token missing or repeated, or two client "
            "authentication methods",
            ErrorResponse,
        ),
        401: Answer("invalid_client: no, unknown or wrong client credentials", ErrorResponse),
    },
)
async def introspect(request: Request) -> Response:
    form = await _form(request)
    oauth = _oauth(request)
    await _authenticated(request, oauth, form)
    body = parse(IntrospectForm, form)
    return respond(IntrospectionResponse.model_validate(await oauth.introspect(body.token)))


OAUTH_ROUTES: list[BaseRoute] = [
    route("/oauth/token", token),
    route("/oauth/revoke", revoke),
    route("/oauth/introspect", introspect),
]
