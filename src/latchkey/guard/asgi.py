"""A pure-ASGI middleware that requires a valid bearer token on every HTTP request."""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import InvalidToken
from ..core.verifier import Verifier
from .bearer import bearer_token, challenge

CLAIMS_KEY = "latchkey.claims"


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on each HTTP request and WebSocket handshake; claims go
    to ``scope["latchkey.claims"]`` and ``request.state.claims``. HTTP failures get 401 with an
    RFC 6750 challenge; a WebSocket handshake without a valid token is closed (code 1008).

    ``public_paths`` are passed through without a token (e.g. ``{"/healthz"}``).
    """

    def __init__(
        self, app: ASGIApp, verifier: Verifier, *, public_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            claims = self.verifier.verify(bearer_token(authorization))
        except InvalidToken as error:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # policy violation
            else:
                await _unauthorized(send, error)
            return
        scope[CLAIMS_KEY] = claims
        scope.setdefault("state", {})["claims"] = claims
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, error: InvalidToken) -> None:
    body = json.dumps({"error": error.error, "error_description": error.description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge(error).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
