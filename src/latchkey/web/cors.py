"""CORS (Fetch §3.2, "CORS protocol") for browser apps on the origins listed in
``LATCHKEY_CORS_ORIGINS``; none listed, no CORS at all (same-origin pages only).

Listed origins may send credentials (the refresh cookie) and the headers the API needs;
every other origin, ``null`` included, gets no ``Access-Control-Allow-Origin``, so its
preflight fails and the browser never sends the X-Latchkey-CSRF header for it (web/csrf.py).
Never ``*``: the Fetch standard forbids it with credentials, and the settings refuse it
(OWASP ASVS v5 V3.4: an allow-list, not a reflection of whatever ``Origin`` says).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .csrf import CSRF_HEADER

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "EXPOSED_HEADERS", "cors_middleware"]

ALLOWED_METHODS = ("GET", "POST", "DELETE")
ALLOWED_HEADERS = ("Authorization", "Content-Type", CSRF_HEADER, "X-Request-ID")
# Readable by the page beyond the CORS-safelisted ones: how long to wait after a 429.
EXPOSED_HEADERS = ("Retry-After",)
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer


def cors_middleware(origins: Sequence[str]) -> list[Middleware]:
    """Starlette's CORSMiddleware for ``origins`` (already validated by the settings), or
    nothing when the list is empty. It answers preflights itself, before routing."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_credentials=True,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )
    ]
