"""The refresh cookie of cookie mode (docs/browser.md): its name, its attributes, and the
helpers that read, set and clear it.

Every attribute is a defence (draft-ietf-httpbis-rfc6265bis, "RFC 6265bis"; OWASP ASVS v5
V3.3 "Cookie Setup"):

- ``__Secure-`` prefix (6265bis "Cookie Name Prefixes"; ASVS V3.3.1): browsers accept the
  cookie only with ``Secure`` from a secure origin, so a plain-http page or a man in the
  middle cannot plant or overwrite it. Not ``__Host-`` (V3.3.3): it demands ``Path=/``.
- ``HttpOnly`` (V3.3.4): scripts cannot read it, so a cross-site-scripting bug cannot steal
  the refresh token.
- ``Secure`` (V3.3.1): sent over HTTPS only.
- ``SameSite=Strict`` (6265bis "The SameSite Attribute"; V3.3.2): never sent with a request
  that another site started; the first layer against CSRF (the second is web/csrf.py).
- ``Path=/auth``: sent to the /auth/* routes only, never to /oauth/* or to an API behind the
  same host; no ``Domain``, so it stays on this host (a host-only cookie).
- ``Max-Age``: the refresh token's own idle expiry; the browser drops it with the token.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = [
    "COOKIE_NAME",
    "COOKIE_PATH",
    "clear_refresh_cookie",
    "refresh_cookie",
    "set_refresh_cookie",
]

COOKIE_NAME = "__Secure-latchkey-refresh"
COOKIE_PATH = "/auth"
_ATTRIBUTES = f"Path={COOKIE_PATH}; Max-Age={{max_age}}; HttpOnly; Secure; SameSite=Strict"


def refresh_cookie(connection: HTTPConnection) -> str | None:
    """The refresh cookie's value (maybe empty), or ``None`` when the request has none."""
    return connection.cookies.get(COOKIE_NAME)


def set_refresh_cookie(response: Response, refresh_token: str, max_age: int) -> None:
    """Put ``refresh_token`` in the cookie for ``max_age`` seconds (``refresh_expires_in``).
    A refresh token is ``lkrt.`` and base64url: no character needs quoting in a cookie."""
    response.headers.append(
        "set-cookie", f"{COOKIE_NAME}={refresh_token}; {_ATTRIBUTES.format(max_age=max_age)}"
    )


def clear_refresh_cookie(response: Response) -> None:
    """Tell the browser to drop the cookie: same name and attributes, ``Max-Age=0``."""
    response.headers.append("set-cookie", f"{COOKIE_NAME}=; {_ATTRIBUTES.format(max_age=0)}")
