"""The HTTP API of docs/design.md §4: it only translates HTTP to service calls and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from ..bootstrap import Container, build
from ..core.clock import Clock
from ..core.errors import (
    AccountDisabled,
    InvalidGrant,
    LatchkeyError,
    NotFound,
    RefreshTokenSuperseded,
)
from ..core.verifier import AccessClaims
from ..guard.bearer import bearer_token
from ..guard.starlette import VERIFIER_STATE
from ..services import SessionView, TokenPair
from ..settings import Settings, origin_of
from .account import ACCOUNT_ROUTES
from .bodies import (
    AccessTokenResponse,
    CookieTokenResponse,
    ErrorResponse,
    Health,
    JwkSet,
    LoginRequest,
    LogoutRequest,
    MeResponse,
    PasswordChangeRequest,
    ReauthenticateRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    ServerMetadata,
    SessionResponse,
    SessionsResponse,
    TokenResponse,
    parse,
    read_json,
    read_optional_json,
)
from .contract import BEARER, Answer, Header, operation, respond, route
from .cookies import (
    COOKIE_NAME,
    COOKIE_PATH,
    clear_refresh_cookie,
    refresh_cookie,
    set_refresh_cookie,
)
from .cors import cors_middleware
from .csrf import CsrfMiddleware, OriginPolicy
from .errors import NO_STORE, error_response, on_http_error, on_latchkey_error, on_unexpected
from .middleware import MetricsMiddleware, RequestIdMiddleware
from .oauth import OAUTH_ROUTES
from .openapi import CSRF, RETRY_AFTER, docs_html, openapi_spec
from .ops import PUBLIC_OPS_ROUTES
from .requests import client_of, container_of

_PAIR = Answer(
    "Token pair. In cookie mode without refresh_token, which is set in the "
    f"{COOKIE_NAME} cookie (HttpOnly; Secure; SameSite=Strict; Path={COOKIE_PATH}; "
    "Max-Age=refresh_expires_in)",
    headers=(Header("Set-Cookie", "Cookie mode only: the refresh cookie"),),
    alternatives=(TokenResponse, CookieTokenResponse),
)
_CLEARS_COOKIE = Header("Set-Cookie", f"With the refresh cookie: {COOKIE_NAME}=; Max-Age=0")
_THROTTLED = "too_many_requests: failed attempts; see Retry-After"


def _error(description: str, *headers: Header) -> Answer:
    return Answer(description, ErrorResponse, headers=headers)


def _tokens(pair: TokenPair) -> JSONResponse:
    return respond(
        TokenResponse(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
            refresh_expires_in=pair.refresh_expires_in,
        )
    )


def _cookie_tokens(pair: TokenPair) -> JSONResponse:
    """Cookie mode (docs/browser.md): the refresh token in the cookie, not in the body."""
    response = respond(
        CookieTokenResponse(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_expires_in=pair.refresh_expires_in,
        )
    )
    set_refresh_cookie(response, pair.refresh_token, pair.refresh_expires_in)
    return response


@operation(
    "POST",
    "Log in with username and password; start a session",
    description='`"cookie": true` (or no `cookie` and LATCHKEY_COOKIE_DEFAULT=true) asks for '
    "cookie mode: the refresh token is set in an HttpOnly cookie instead of the body, and the "
    f"request needs {CSRF.name}: 1 from an allowed origin.",
    body=LoginRequest,
    headers=(CSRF,),
    answers={
        200: _PAIR,
        401: _error("invalid_grant: unknown user or wrong password (one answer)"),
        403: _error("account_disabled: right password, disabled account"),
        429: _error(_THROTTLED, RETRY_AFTER),
    },
)
async def login(request: Request) -> Response:
    body = parse(LoginRequest, await read_json(request, request.app.state.max_body))
    cookie_mode = request.app.state.cookie_default if body.cookie is None else body.cookie
    if cookie_mode:
        origins: OriginPolicy = request.app.state.origins
        origins.check(request)  # CSRF (web/csrf.py), before the user is even looked up
    pair = await container_of(request).tokens.login(
        body.username, body.password, client_of(request)
    )
    return _cookie_tokens(pair) if cookie_mode else _tokens(pair)


@operation(
    "POST",
    "Rotate a refresh token: new access token and new refresh token",
    description="Every refresh token works once. Reusing an older one outside the grace window "
    "revokes the whole session; retrying the previous one within the window returns the same "
    "successor. Header mode: `refresh_token` in the body. Cookie mode: no `refresh_token` (no "
    "body, or `{}`) and the refresh cookie; the successor is set in the cookie; a 401 or an "
    "account_disabled 403 clears it (a cross-site 403 does not).",
    body=RefreshRequest,
    body_required=False,
    security=({}, {"refresh_cookie": ()}),
    answers={
        200: _PAIR,
        401: _error(
            "invalid_grant: invalid, expired, reused or revoked; or no refresh token at all",
            _CLEARS_COOKIE,
        ),
        403: _error("account_disabled: the session's account is disabled", _CLEARS_COOKIE),
    },
)
async def refresh(request: Request) -> Response:
    body = parse(RefreshRequest, await read_optional_json(request, request.app.state.max_body))
    if body.refresh_token is not None:  # header mode
        pair = await container_of(request).tokens.refresh(body.refresh_token, client_of(request))
        return _tokens(pair)
    cookie = refresh_cookie(request)
    if cookie is None:
        raise InvalidGrant("No refresh token: send refresh_token or the refresh cookie.")
    # Cookie mode; CsrfMiddleware has checked the request before it got here.
    try:
        pair = await container_of(request).tokens.refresh(cookie, client_of(request))
    except RefreshTokenSuperseded as exc:
        # A straggler: the browser already holds a newer cookie, which must stay.
        return error_response(exc)
    except (InvalidGrant, AccountDisabled) as exc:
        response = error_response(exc)
        clear_refresh_cookie(response)  # it is of no use any more: the browser drops it
        return response
    return _cookie_tokens(pair)


@operation(
    "POST",
    "End the session of a bearer access token or of a refresh token",
    description="The bearer token's session, else the refresh cookie's, else the body's refresh "
    "token's. With the refresh cookie, a 204 or an invalid_grant 401 clears it; other failures "
    "(403, 429, 503, a bad bearer token) leave it, so that logging out can be tried again.",
    body=LogoutRequest,
    body_required=False,
    security=({"bearer": ()}, {"refresh_cookie": ()}, {}),
    answers={
        204: Answer("Session revoked", headers=(_CLEARS_COOKIE,)),
        401: _error("invalid_token or invalid_grant: no valid credentials"),
    },
)
async def logout(request: Request) -> Response:
    cookie = refresh_cookie(request)
    if cookie is None:
        return await _logout(request, None)
    # Cookie mode (CsrfMiddleware has checked the request); the status is the same as
    # without the cookie. The cookie goes once the session has ended, or when its token is of
    # no use (invalid, expired); after a 429 or 503 it stays, so that signing out can be
    # tried again rather than leave a live session without its cookie.
    try:
        response = await _logout(request, cookie)
    except InvalidGrant as exc:
        response = error_response(exc)
    clear_refresh_cookie(response)
    return response


async def _logout(request: Request, cookie: str | None) -> Response:
    """End the session of the bearer token if there is one, else of the refresh cookie,
    else of the refresh token in the body."""
    tokens = container_of(request).tokens
    authorization = request.headers.get("authorization")
    if authorization:
        claims = tokens.verify_access_token(bearer_token(authorization))
        await tokens.logout_with_access_token(claims, client_of(request))
    else:
        body = parse(LogoutRequest, await read_optional_json(request, request.app.state.max_body))
        token = cookie if cookie is not None else body.refresh_token
        if token is None:
            bearer_token(None)  # raises MissingToken: neither credential was sent (401)
        await tokens.logout_with_refresh_token(token, client_of(request))
    return Response(status_code=204, headers=NO_STORE)


def _claims(request: Request) -> AccessClaims:
    """The verified claims of the request's bearer token (401 with RFC 6750 otherwise)."""
    authorization = request.headers.get("authorization")
    return container_of(request).tokens.verify_access_token(bearer_token(authorization))


@operation(
    "GET",
    "Who the bearer token belongs to",
    security=BEARER,
    answers={200: Answer("Identity", MeResponse)},
)
async def me(request: Request) -> Response:
    identity = await container_of(request).tokens.me(_claims(request))
    return respond(MeResponse.model_validate(identity))


@operation(
    "POST",
    "End every session of the bearer's user, this one included",
    security=BEARER,
    answers={204: Answer("Every session revoked", headers=(_CLEARS_COOKIE,))},
)
async def logout_all(request: Request) -> Response:
    await container_of(request).sessions.logout_all(_claims(request), client_of(request))
    response = Response(status_code=204, headers=NO_STORE)
    if refresh_cookie(request) is not None:
        clear_refresh_cookie(response)  # its session has just ended with the others
    return response


@operation(
    "GET",
    "The bearer's live sessions; `current` marks the caller's own",
    security=BEARER,
    answers={200: Answer("Sessions", SessionsResponse)},
)
async def list_sessions(request: Request) -> Response:
    views = await container_of(request).sessions.sessions_of(_claims(request))
    return respond(SessionsResponse(sessions=[_session(view) for view in views]))


def _session(view: SessionView) -> SessionResponse:
    return SessionResponse(
        id=view.sid,
        created_at=int(view.created_at),
        last_used_at=int(view.last_used_at),
        expires_at=int(view.expires_at),
        user_agent=view.user_agent,
        address=view.address,
        current=view.current,
    )


@operation(
    "DELETE",
    "End one of the bearer's own sessions",
    security=BEARER,
    answers={
        204: Answer("Session revoked"),
        404: _error("not_found: no live session of the bearer with this id"),
    },
)
async def end_session(request: Request) -> Response:
    claims = _claims(request)
    sid = request.path_params["sid"]
    await container_of(request).sessions.end_own_session(claims, sid, client_of(request))
    return Response(status_code=204, headers=NO_STORE)


@operation(
    "POST",
    "Change the password; every other session is revoked",
    body=PasswordChangeRequest,
    security=BEARER,
    answers={
        204: Answer("Changed; this session goes on"),
        400: _error(
            "invalid_grant: current password wrong; invalid_request: the new password breaks "
            "the policy, or the body is malformed"
        ),
        429: _error("too_many_requests: wrong current passwords; see Retry-After", RETRY_AFTER),
    },
)
async def change_password(request: Request) -> Response:
    claims = _claims(request)
    body = parse(PasswordChangeRequest, await read_json(request, request.app.state.max_body))
    await container_of(request).accounts.change_password(
        claims, body.current_password, body.new_password, client_of(request)
    )
    return Response(status_code=204, headers=NO_STORE)


@operation(
    "POST",
    "Prove the password again: a new access token of this session (its auth_time now)",
    body=ReauthenticateRequest,
    security=BEARER,
    answers={
        200: Answer("A new access token; no new session, no refresh token", AccessTokenResponse),
        400: _error("invalid_grant: the password is wrong; invalid_request: a malformed body"),
        429: _error("too_many_requests: counted with the logins; see Retry-After", RETRY_AFTER),
    },
)
async def reauthenticate(request: Request) -> Response:
    claims = _claims(request)
    body = parse(ReauthenticateRequest, await read_json(request, request.app.state.max_body))
    answer = await container_of(request).tokens.reauthenticate(
        claims, body.password, client_of(request)
    )
    return respond(AccessTokenResponse.model_validate(answer))


@operation(
    "POST",
    "Create an account (only with LATCHKEY_ALLOW_REGISTRATION=true)",
    body=RegisterRequest,
    answers={
        201: Answer("Created", RegisterResponse),
        400: _error("invalid_request: username or password rules, or a malformed body"),
        404: _error("not_found: registration is off"),
        409: _error("conflict: the username is taken"),
        429: _error("too_many_requests: see Retry-After", RETRY_AFTER),
    },
)
async def register(request: Request) -> Response:
    accounts = container_of(request).accounts
    if not accounts.allow_registration:
        raise NotFound()  # before reading the body: the route does not exist
    body = parse(RegisterRequest, await read_json(request, request.app.state.max_body))
    user = await accounts.register(body.username, body.password, client_of(request))
    return respond(RegisterResponse(sub=user.id, username=user.username), status_code=201)


@operation(
    "GET",
    "Public keys that verify access tokens (RFC 7517)",
    answers={200: Answer("JWK Set", JwkSet)},
    reaches_store=False,
)
async def jwks(request: Request) -> Response:
    # RFC 7517 §5; cacheable, so that resource servers do not fetch it per request. Keep the
    # max-age below LATCHKEY_KEY_PREPUBLISH (600 s): a rotated key is then in every cached
    # copy before it signs (docs/keys.md).
    return respond(JwkSet.model_validate(container_of(request).keys.jwks()), headers=_CACHED)


@operation(
    "GET",
    "Authorization server metadata (RFC 8414)",
    answers={200: Answer("Metadata", ServerMetadata)},
    reaches_store=False,
)
async def metadata(request: Request) -> Response:
    return respond(
        ServerMetadata.model_validate(server_metadata(container_of(request))), headers=_CACHED
    )


_CACHED = {"Cache-Control": "public, max-age=300"}


def server_metadata(container: Container) -> dict[str, Any]:
    """RFC 8414 §2 metadata: what this server really offers. No authorization endpoint, so
    no response types; the only grant is refresh_token (password login is /auth/login, not
    the OAuth password grant). Scopes are whatever operators give users: not listed."""
    issuer = container.settings.issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/oauth/token",
        "token_endpoint_auth_methods_supported": ["none"],  # public clients
        "grant_types_supported": ["refresh_token"],
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": sorted(
            {key.alg for key in container.keys.ring}
        ),
        "login_endpoint": f"{issuer}/auth/login",
        "refresh_endpoint": f"{issuer}/auth/refresh",
        "logout_endpoint": f"{issuer}/auth/logout",
        "sessions_endpoint": f"{issuer}/auth/sessions",
        "userinfo_endpoint": f"{issuer}/auth/me",
        "service_documentation": f"{issuer}/docs",
    }


@operation(
    "GET",
    "Liveness",
    answers={200: Answer("Alive", Health)},
    reaches_store=False,
)
async def healthz(_request: Request) -> Response:
    return respond(Health(status="ok"), headers={})


@operation(
    "GET",
    "This description",
    answers={200: Answer("OpenAPI document", schema={"type": "object"})},
    reaches_store=False,
)
async def openapi(request: Request) -> Response:
    return JSONResponse(_spec(request))


@operation(
    "GET",
    "This description as a page",
    answers={200: Answer("HTML", media_type="text/html")},
    reaches_store=False,
)
async def docs(request: Request) -> Response:
    return HTMLResponse(docs_html(_spec(request)))


def _spec(request: Request) -> dict[str, Any]:
    """The app's document, made once from its routes' declarations."""
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = openapi_spec(request.app.routes, container_of(request).settings.issuer)
    spec: dict[str, Any] = state.openapi
    return spec


ROUTES: list[BaseRoute] = [
    route("/auth/login", login),
    route("/auth/refresh", refresh),
    route("/auth/logout", logout),
    route("/auth/logout-all", logout_all),
    route("/auth/me", me),
    route("/auth/sessions", list_sessions),
    route("/auth/sessions/{sid}", end_session),
    route("/auth/password", change_password),
    route("/auth/reauthenticate", reauthenticate),
    route("/auth/register", register),
    route("/.well-known/jwks.json", jwks),
    route("/.well-known/oauth-authorization-server", metadata),
    route("/healthz", healthz),
    route("/openapi.json", openapi),
    route("/docs", docs),
]


def create_app(
    settings: Settings | None = None,
    *,
    container: Container | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The ASGI app over ``container`` (built from ``settings`` unless one is handed in).
    Its start migrates the schema, loads the keys and runs the background loops."""
    settings = container.settings if container else settings or Settings()
    active = container or build(settings, clock)
    # Origins trusted by the CSRF check besides the request's own (docs/browser.md).
    origins = OriginPolicy([origin_of(settings.issuer), *settings.cors_origins])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await active.start()
        running = [asyncio.create_task(loop) for loop in active.background()]
        try:
            yield
        finally:
            for task in running:
                task.cancel()
            await active.close()

    app = Starlette(
        routes=[*ROUTES, *OAUTH_ROUTES, *PUBLIC_OPS_ROUTES, *ACCOUNT_ROUTES],
        middleware=[
            Middleware(RequestIdMiddleware),  # outermost: every log line carries the id
            Middleware(MetricsMiddleware, metrics=active.metrics),
            # Preflights answered before routing; CORS headers on error responses too.
            *cors_middleware(settings.cors_origins),
            Middleware(CsrfMiddleware, policy=origins),  # before any handler reads anything
        ],
        lifespan=lifespan,
        exception_handlers={
            LatchkeyError: on_latchkey_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.container = active
    app.state.metrics = active.metrics
    app.state.redis_ping = active.revocations.ping if settings.redis_url else None
    app.state.max_body = settings.max_body_bytes
    app.state.cookie_default = settings.cookie_default
    app.state.origins = origins
    setattr(app.state, VERIFIER_STATE, active.verifier)
    return app
