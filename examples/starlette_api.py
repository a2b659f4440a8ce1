"""A small "notes" API in Starlette: ``BearerAuthMiddleware`` guards every route but /health.

    LATCHKEY_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        uvicorn --factory examples.starlette_api:create_app --port 8001

The middleware puts the claims of a valid token in ``request.state.claims``; a route that
needs a scope checks it with ``require_token``, which reuses those claims. The lifespan
fetches the keys before the first request; when the key server cannot be reached, refusals
are 503 with ``Retry-After``, never 401.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latchkey import Verifier
from latchkey.guard import BearerAuthMiddleware, exception_handlers, require_token


def verifier_from_env() -> Verifier:
    return Verifier.from_jwks_url(
        os.environ["LATCHKEY_JWKS_URL"],
        issuer=os.environ.get("LATCHKEY_ISSUER", "http://127.0.0.1:8000"),
        audience=os.environ.get("LATCHKEY_AUDIENCE", "latchkey"),
    )


def create_app(verifier: Verifier | None = None) -> Starlette:
    verifier = verifier or verifier_from_env()
    notes: dict[str, list[str]] = {}
    need_write = require_token(scopes=["write"])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def list_notes(request: Request) -> JSONResponse:
        owner = request.state.claims["sub"]
        return JSONResponse({"owner": owner, "notes": notes.get(owner, [])})

    async def add_note(request: Request) -> JSONResponse:
        claims = await need_write(request)  # 403 without the "write" scope
        text = str((await request.json()).get("text", ""))
        notes.setdefault(claims["sub"], []).append(text)
        return JSONResponse({"owner": claims["sub"], "text": text}, status_code=201)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The keys before the first request; their refresh then runs as a task on this loop.
        await verifier.warm_up_async()
        yield
        await verifier.aclose()

    return Starlette(
        lifespan=lifespan,
        exception_handlers=exception_handlers,  # require_token's 403 as an OAuth body
        routes=[
            Route("/health", health),
            Route("/notes", list_notes, methods=["GET"]),
            Route("/notes", add_note, methods=["POST"]),
        ],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, public_paths={"/health"})],
    )
