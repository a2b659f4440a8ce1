"""The OpenAPI 3.1 description of every route, and a self-contained page that shows it."""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from pydantic import BaseModel

from .bodies import (
    CookieTokenResponse,
    ErrorResponse,
    LoginRequest,
    LogoutRequest,
    MeResponse,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    SessionsResponse,
    TokenResponse,
)
from .cookies import COOKIE_NAME, COOKIE_PATH
from .csrf import CSRF_HEADER
from .forms import (
    FORM,
    IntrospectForm,
    IntrospectionResponse,
    OAuthTokenResponse,
    RevokeForm,
    TokenForm,
)

_MODELS: list[type[BaseModel]] = [
    TokenForm,
    RevokeForm,
    IntrospectForm,
    OAuthTokenResponse,
    IntrospectionResponse,
    LoginRequest,
    RefreshRequest,
    LogoutRequest,
    RegisterRequest,
    PasswordChangeRequest,
    TokenResponse,
    CookieTokenResponse,
    MeResponse,
    RegisterResponse,
    SessionsResponse,
    ErrorResponse,
]


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    schema = model if isinstance(model, dict) else _ref(model)
    return {"content": {"application/json": {"schema": schema}}}


def _form(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {FORM: {"schema": _ref(model)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json(ErrorResponse)}


_OBJECT = {"type": "object"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

# Cookie mode and its CSRF rule (docs/browser.md, web/cookies.py, web/csrf.py).
_CSRF = {
    "name": CSRF_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["1"]},
    "description": "Required (with an Origin that is this service's, the issuer's or one of "
    "LATCHKEY_CORS_ORIGINS; or, without Origin, Sec-Fetch-Site: same-origin) whenever the "
    "request carries the refresh cookie, and for a login in cookie mode.",
}
_CROSS_SITE = (
    "access_denied: the request carries the refresh cookie (or asks for it) without "
    f"{CSRF_HEADER}: 1 from an allowed origin; nothing was changed"
)
_PAIR = {
    "description": "Token pair. In cookie mode without refresh_token, which is set in the "
    f"{COOKIE_NAME} cookie (HttpOnly; Secure; SameSite=Strict; Path={COOKIE_PATH}; "
    "Max-Age=refresh_expires_in)",
    "headers": {
        "Set-Cookie": {
            "description": "Cookie mode only: the refresh cookie",
            "schema": {"type": "string"},
        }
    },
    **_json({"oneOf": [_ref(TokenResponse), _ref(CookieTokenResponse)]}),
}
_CLEARS_COOKIE = {
    "Set-Cookie": {
        "description": f"With the refresh cookie: {COOKIE_NAME}=; Max-Age=0 (cleared)",
        "schema": {"type": "string"},
    }
}


def _operations() -> dict[str, dict[str, Any]]:
    return {
        "/auth/login": {
            "post": {
                "summary": "Log in with username and password; start a session",
                "description": '`"cookie": true` (or no `cookie` and LATCHKEY_COOKIE_DEFAULT=true) '
                "asks for cookie mode: the refresh token is set in an HttpOnly cookie instead of "
                f"the body, and the request needs {CSRF_HEADER}: 1 from an allowed origin.",
                "parameters": [_CSRF],
                "requestBody": {"required": True, **_json(LoginRequest)},
                "responses": {
                    "200": _PAIR,
                    "400": _error("Malformed request"),
                    "401": _error("invalid_grant: unknown user or wrong password (one answer)"),
                    "403": _error(
                        f"account_disabled: right password, disabled account; {_CROSS_SITE}"
                    ),
                    "413": _error("Body too large"),
                    "429": _error("too_many_requests: failed attempts; see Retry-After"),
                },
            }
        },
        "/auth/refresh": {
            "post": {
                "summary": "Rotate a refresh token: new access token and new refresh token",
                "description": "Every refresh token works once. Reusing an older one outside the "
                "grace window revokes the whole session; retrying the previous one within the "
                "window returns the same successor. Header mode: `refresh_token` in the body. "
                "Cookie mode: no `refresh_token` (no body, or `{}`) and the refresh cookie; the "
                "successor is set in the cookie; a 401 or an account_disabled 403 clears it (a "
                "cross-site 403 does not).",
                "security": [{}, {"refresh_cookie": []}],
                "parameters": [_CSRF],
                "requestBody": {"required": False, **_json(RefreshRequest)},
                "responses": {
                    "200": _PAIR,
                    "400": _error("Malformed request"),
                    "401": {
                        **_error(
                            "invalid_grant: invalid, expired, reused or revoked; or no refresh "
                            "token at all"
                        ),
                        "headers": _CLEARS_COOKIE,
                    },
                    "403": {
                        **_error(
                            f"account_disabled: the session's account is disabled; {_CROSS_SITE}"
                        ),
                        "headers": _CLEARS_COOKIE,
                    },
                },
            }
        },
        "/auth/logout": {
            "post": {
                "summary": "End the session of a bearer access token or of a refresh token",
                "description": "The bearer token's session, else the refresh cookie's, else the "
                "body's refresh token's. With the refresh cookie, a 204 or an invalid_grant 401 "
                "clears it; other failures (403, 429, 503, a bad bearer token) leave it, so "
                "that logging out can be tried again.",
                "security": [{"bearer": []}, {"refresh_cookie": []}, {}],
                "parameters": [_CSRF],
                "requestBody": {"required": False, **_json(LogoutRequest)},
                "responses": {
                    "204": {"description": "Session revoked", "headers": _CLEARS_COOKIE},
                    "400": _error("Malformed request"),
                    "401": _error("No valid credentials"),
                    "403": _error(_CROSS_SITE),
                },
            }
        },
        "/auth/logout-all": {
            "post": {
                "summary": "End every session of the bearer's user, this one included",
                "security": _BEARER,
                "parameters": [_CSRF],
                "responses": {
                    "204": {"description": "Every session revoked", "headers": _CLEARS_COOKIE},
                    "401": _error("invalid_token"),
                    "403": _error(_CROSS_SITE),
                },
            }
        },
        "/auth/sessions": {
            "get": {
                "summary": "The bearer's live sessions; `current` marks the caller's own",
                "security": _BEARER,
                "responses": {
                    "200": {"description": "Sessions", **_json(SessionsResponse)},
                    "401": _error("invalid_token"),
                },
            }
        },
        "/auth/sessions/{sid}": {
            "delete": {
                "summary": "End one of the bearer's own sessions",
                "security": _BEARER,
                "parameters": [
                    {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}},
                    _CSRF,
                ],
                "responses": {
                    "204": {"description": "Session revoked"},
                    "401": _error("invalid_token"),
                    "403": _error(_CROSS_SITE),
                    "404": _error("not_found: no live session of the bearer with this id"),
                },
            }
        },
        "/auth/password": {
            "post": {
                "summary": "Change the password; every other session is revoked",
                "security": _BEARER,
                "parameters": [_CSRF],
                "requestBody": {"required": True, **_json(PasswordChangeRequest)},
                "responses": {
                    "204": {"description": "Changed; this session goes on"},
                    "400": _error(
                        "invalid_grant: current password wrong; invalid_request: the new "
                        "password breaks the policy"
                    ),
                    "401": _error("invalid_token"),
                    "403": _error(_CROSS_SITE),
                    "429": _error("too_many_requests: wrong current passwords; see Retry-After"),
                },
            }
        },
        "/auth/register": {
            "post": {
                "summary": "Create an account (only with LATCHKEY_ALLOW_REGISTRATION=true)",
                "requestBody": {"required": True, **_json(RegisterRequest)},
                "responses": {
                    "201": {"description": "Created", **_json(RegisterResponse)},
                    "400": _error("invalid_request: username or password rules"),
                    "404": _error("not_found: registration is off"),
                    "409": _error("conflict: the username is taken"),
                    "429": _error("too_many_requests: see Retry-After"),
                },
            }
        },
        "/auth/me": {
            "get": {
                "summary": "Who the bearer token belongs to",
                "security": _BEARER,
                "responses": {
                    "200": {"description": "Identity", **_json(MeResponse)},
                    "401": _error("invalid_token"),
                },
            }
        },
        "/oauth/token": {
            "post": {
                "summary": "OAuth token endpoint: grant_type=refresh_token (RFC 6749 §6)",
                "description": "The rules of /auth/refresh (rotation, grace window, reuse "
                "detection) with OAuth's form body and errors. Public clients: no client "
                "authentication; a client_id is ignored. `scope` may narrow the new access "
                "token's scope, never widen it. There is no password grant: log in at "
                "/auth/login.",
                "requestBody": _form(TokenForm),
                "responses": {
                    "200": {"description": "Tokens (RFC 6749 §5.1)", **_json(OAuthTokenResponse)},
                    "400": _error(
                        "invalid_request: not a form, a parameter missing or repeated; "
                        "unsupported_grant_type; invalid_grant: invalid, expired, revoked or "
                        "reused refresh token, or disabled account; invalid_scope"
                    ),
                    "413": _error("Body too large"),
                },
            }
        },
        "/oauth/revoke": {
            "post": {
                "summary": "Revoke a refresh or access token: its session ends (RFC 7009)",
                "description": "Public clients: no client authentication. Unknown, invalid or "
                "expired tokens get the same 200 (RFC 7009 §2.2).",
                "requestBody": _form(RevokeForm),
                "responses": {
                    "200": {"description": "Revoked, or nothing to revoke (empty body)"},
                    "400": _error("invalid_request: not a form, token missing or repeated"),
                    "413": _error("Body too large"),
                },
            }
        },
        "/oauth/introspect": {
            "post": {
                "summary": "Token introspection for resource servers (RFC 7662)",
                "description": "Needs a registered client's credentials (`latchkey clients "
                "add`): HTTP Basic or client_id/client_secret in the form. Anything "
                'invalid, expired or revoked is `{"active": false}`.',
                "security": [{"client_basic": []}, {}],
                "requestBody": _form(IntrospectForm),
                "responses": {
                    "200": {"description": "Introspection", **_json(IntrospectionResponse)},
                    "400": _error("invalid_request: not a form, token missing or repeated"),
                    "401": _error("invalid_client: no, unknown or wrong client credentials"),
                    "413": _error("Body too large"),
                },
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "summary": "Public keys that verify access tokens (RFC 7517)",
                "responses": {"200": {"description": "JWK Set", **_json(_OBJECT)}},
            }
        },
        "/.well-known/oauth-authorization-server": {
            "get": {
                "summary": "Authorization server metadata (RFC 8414)",
                "responses": {"200": {"description": "Metadata", **_json(_OBJECT)}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": {"description": "Alive", **_json(_OBJECT)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database (and Redis when configured) answer",
                "responses": {
                    "200": {"description": "Ready", **_json(_OBJECT)},
                    "503": {"description": "A dependency is unavailable", **_json(_OBJECT)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "responses": {"200": {"description": "OpenAPI document", **_json(_OBJECT)}},
            }
        },
        "/docs": {
            "get": {
                "summary": "This description as a page",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/account": {
            "get": {
                "summary": "The account page: sign in, sessions, sign out, change password",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/account/{asset}": {
            "get": {
                "summary": "The account page's script, style sheet and icon",
                "parameters": [
                    {
                        "name": "asset",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["app.js", "app.css", "icon.svg"]},
                    }
                ],
                "responses": {
                    "200": {"description": "The file"},
                    "304": {"description": "Not modified (ETag)"},
                    "404": _error("not_found: no such file"),
                },
            }
        },
    }


_COMPONENT = "#/components/schemas/{model}"


def _component_schemas() -> dict[str, Any]:
    """Every model's JSON Schema under components/schemas; a model nested in another (such as
    SessionResponse in SessionsResponse) becomes a component of its own, so that every
    ``$ref`` of the document resolves from its root."""
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template=_COMPONENT)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


@cache
def openapi_spec(server_url: str) -> dict[str, Any]:
    schemas = _component_schemas()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "latchkey",
            "version": "0.1.0",
            "description": "Token authentication for Web APIs.",
        },
        "servers": [{"url": server_url}],
        "paths": _operations(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "client_basic": {"type": "http", "scheme": "basic"},
                "refresh_cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
            },
        },
    }


def docs_html(spec: dict[str, Any]) -> str:
    """A plain page listing every operation with its schemas (no scripts, no CDN)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8><title>latchkey API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;"
        "overflow:auto}h2{margin-top:2rem;font-size:1.1rem}.m{font-weight:700;"
        "text-transform:uppercase;margin-right:.5rem}</style>",
        f"<h1>{e(spec['info']['title'])} API</h1><p>{e(spec['info']['description'])} "
        "Machine-readable: <a href=/openapi.json>/openapi.json</a>.</p>",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h2><span class=m>{e(method)}</span><code>{e(path)}</code></h2>")
            parts.append(f"<p>{e(op['summary'])}</p>")
            if "description" in op:
                parts.append(f"<p>{e(op['description'])}</p>")
            if "requestBody" in op:
                media_type, content = next(iter(op["requestBody"]["content"].items()))
                parts.append(
                    f"<p>Request body (<code>{e(media_type)}</code>):</p><pre>"
                    + e(json.dumps(_resolve(spec, content["schema"]), indent=2))
                    + "</pre>"
                )
            parts.append(
                "<ul>"
                + "".join(
                    f"<li><b>{e(code)}</b> {e(resp['description'])}</li>"
                    for code, resp in op["responses"].items()
                )
                + "</ul>"
            )
    return "".join(parts)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved
