"""The account page: ``GET /account`` and its few static files, shipped in the package.

The page (static/account.html, app.js, app.css) is plain HTML, CSS and JavaScript with no
build step and nothing from another origin. It signs in with the cookie mode of
``/auth/login`` (the refresh token lives only in an HttpOnly cookie; the access token only in
a JavaScript variable), shows who is signed in and their sessions, revokes other sessions,
signs out here or everywhere, and changes the password. Tabs of one browser share one session:
refreshes run under a Web Lock, and sign-in, refreshed tokens and sign-out are announced on a
BroadcastChannel.

Every response of these routes, a 404 for an unknown file included, carries a strict
Content-Security-Policy (no inline script or style, nothing
from elsewhere, no framing). Files are read once, at import; only the names in ``_ASSETS``
are served, so no request path ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..core.errors import NotFound
from .bodies import ErrorResponse
from .contract import Answer, operation, route
from .errors import error_response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> _File:
    body = (files("latchkey.web") / "static" / name).read_bytes()
    return _File(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


_PAGE = _load("account.html", "text/html; charset=utf-8")
_ASSETS = {
    "app.js": _load("app.js", "text/javascript; charset=utf-8"),
    "app.css": _load("app.css", "text/css; charset=utf-8"),
    "icon.svg": _load("icon.svg", "image/svg+xml"),
}


def _serve(request: Request, file: _File, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


@operation(
    "GET",
    "The account page: sign in, sessions, sign out, change password",
    answers={200: Answer("HTML", media_type="text/html")},
    reaches_store=False,
)
async def account_page(request: Request) -> Response:
    # no-store: the page is small, and a shared cache has no business keeping it.
    return _serve(request, _PAGE, "no-store")


@operation(
    "GET",
    "The account page's script, style sheet and icon",
    path_parameters={"asset": {"type": "string", "enum": ["app.js", "app.css", "icon.svg"]}},
    answers={
        200: Answer("The file"),
        304: Answer("Not modified (ETag)"),
        404: Answer("not_found: no such file", ErrorResponse),
    },
    reaches_store=False,
)
async def account_asset(request: Request) -> Response:
    asset = _ASSETS.get(request.path_params["asset"])
    if asset is None:
        response = error_response(NotFound("No such file."))
        response.headers.update(SECURITY_HEADERS)
        return response
    # no-cache: revalidated (ETag) on every load, so an upgrade is seen at once.
    return _serve(request, asset, "no-cache")


ACCOUNT_ROUTES: list[BaseRoute] = [
    route("/account", account_page),
    # {asset:path}: every GET under /account/ is answered here, unknown names with a 404
    # that carries the security headers too.
    route("/account/{asset:path}", account_asset),
]
