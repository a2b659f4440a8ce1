"""A pure-ASGI middleware that requires a valid bearer token on every HTTP request."""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import (
    InsufficientUserAuthentication,
    InvalidToken,
    KeySetUnavailable,
    LatchkeyError,
)
from ..core.verifier import Verifier
from .bearer import bearer_token, refusal_body, refusal_headers

CLAIMS_KEY = "latchkey.claims"


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on each HTTP request and WebSocket handshake; claims go
    to ``scope["latchkey.claims"]`` and ``request.state.claims``. HTTP failures get 401 with an
    RFC 6750 challenge, or 503 with ``Retry-After`` when the keys cannot be had now; a
    WebSocket handshake is closed (1008 for a bad token, 1013 "try again later" for a 503).
    The check never blocks the event loop (:meth:`Verifier.verify_async`).

    ``public_paths`` are passed through without a token (e.g. ``{"/healthz"}``). ``max_age``:
    every request needs a login at most that many seconds old (the token's ``auth_time``),
    else 401 ``insufficient_user_authentication`` (RFC 9470 §3); for a few routes only, use
    ``require_token(max_age=...)`` on them instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        public_paths: Collection[str] = (),
        max_age: int | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)
        self.max_age = max_age

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
            claims = await self.verifier.verify_async(bearer_token(authorization))
            if self.max_age is not None:
                self.verifier.require_recent_login(claims, self.max_age)
        except (InvalidToken, InsufficientUserAuthentication, KeySetUnavailable) as error:
            if scope["type"] == "websocket":
                # RFC 6455 §7.4.1 1008 policy violation; 1013 try again later (IANA registry)
                code = 1013 if isinstance(error, KeySetUnavailable) else 1008
                await send({"type": "websocket.close", "code": code})
            else:
                await _refuse(send, error)
            return
        scope[CLAIMS_KEY] = claims
        scope.setdefault("state", {})["claims"] = claims
        await self.app(scope, receive, send)


async def _refuse(send: Send, error: LatchkeyError) -> None:
    body = json.dumps(refusal_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in refusal_headers(error).items()
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
