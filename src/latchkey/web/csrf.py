"""Cross-site request forgery: the one rule for requests that the refresh cookie authenticates.

A browser attaches the cookie by itself, so a request that carries it proves nothing about
which page sent it. ``SameSite=Strict`` (web/cookies.py) already keeps it off requests that
another *site* starts; this rule also covers sibling origins of the same site and browsers
that ignore SameSite. Every state-changing request under the cookie's path that carries the
cookie, and every login that asks for cookie mode, must show both
(OWASP Cross-Site Request Forgery Prevention Cheat Sheet: "Employing Custom Request Headers
for AJAX/API", "Verifying Origin With Standard Headers", "Fetch Metadata headers"; OWASP ASVS
v5 V3.5.1-V3.5.3):

1. ``X-Latchkey-CSRF: 1``. A page of another origin cannot add a custom header without a
   CORS preflight (Fetch, "CORS-safelisted request-header"), and the preflight is refused
   unless its origin is in ``LATCHKEY_CORS_ORIGINS``; HTML forms cannot add headers at all.
2. An allowed origin. ``Origin`` (RFC 6454 §7, Fetch "origin header") when the browser sends
   it: this service's own origin, the issuer's, or one of ``LATCHKEY_CORS_ORIGINS``;
   ``null`` (sandboxed frames, ``file:``, some redirects: anyone) is refused. Without
   ``Origin``, Fetch Metadata's ``Sec-Fetch-Site`` must be ``same-origin`` (or ``none``: the
   user's own navigation). Neither header: refused.

The check reads headers only: a refused request reaches no handler and no database, so
nothing is read, rotated or revoked (403 ``access_denied``).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import CrossSiteRequest
from ..settings import origin_of
from .cookies import COOKIE_PATH, refresh_cookie
from .errors import error_response

__all__ = ["CSRF_HEADER", "CsrfMiddleware", "OriginPolicy"]

CSRF_HEADER = "X-Latchkey-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
_SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})


class OriginPolicy:
    """Decides whether a request shows the proof; knows the origins it trusts."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.trusted = frozenset(trusted)

    def check(self, connection: HTTPConnection) -> None:
        """Raise :class:`CrossSiteRequest` unless the request has both proofs."""
        headers = connection.headers
        if headers.get(CSRF_HEADER) != "1" or not self._allowed_origin(connection):
            raise CrossSiteRequest()

    def _allowed_origin(self, connection: HTTPConnection) -> bool:
        origins = connection.headers.getlist("origin")
        if len(origins) > 1:
            return False  # never sent twice by a browser
        if origins:
            origin = origins[0]
            return origin != "null" and (
                origin in self.trusted or origin == _own_origin(connection)
            )
        return connection.headers.get("sec-fetch-site") in _SAME_ORIGIN_SITES

    def __repr__(self) -> str:
        return f"OriginPolicy(trusted={sorted(self.trusted)!r})"


def _own_origin(connection: HTTPConnection) -> str | None:
    """The origin the request was sent to: its scheme and its ``Host``."""
    url = connection.url
    try:
        return origin_of(f"{url.scheme}://{url.netloc}")
    except ValueError:  # a Host header no browser would send
        return None


def under_cookie_path(path: str) -> bool:
    """RFC 6265bis "path-match": the paths the browser sends the cookie to."""
    return path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/")


class CsrfMiddleware:
    """Applies :class:`OriginPolicy` to every state-changing request under the cookie's path
    that carries the refresh cookie, before routing. The login's "cookie": true is in its
    body, so the login handler asks the same policy itself."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        # The handlers read the cookie with the same parser: whatever they would use (even
        # an empty value) is checked here first.
        if under_cookie_path(_route_path(scope)) and refresh_cookie(connection) is not None:
            try:
                self.policy.check(connection)
            except CrossSiteRequest as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches (without a ``root_path`` the server was given)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path
