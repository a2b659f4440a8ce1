"""A small "notes" API in FastAPI, protected by latchkey access tokens.

Run it next to a latchkey service (``latchkey serve`` on port 8000)::

    LATCHKEY_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        uvicorn --factory examples.fastapi_api:create_app --port 8001

``GET /notes`` needs any valid access token, ``POST /notes`` one with the ``write`` scope;
``/health`` is public. With ``LATCHKEY_REDIS_URL`` set to the service's Redis, the tokens of a
session revoked at the service (logout, password change, …) are refused at once instead of
living out their 15 minutes. The lifespan fetches the keys before the first request; when the
key server cannot be reached, refusals are 503 with ``Retry-After``, never 401.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from latchkey import AccessClaims, Verifier
from latchkey.guard import exception_handlers, require_token
from latchkey.guard.denylist import RedisDenyList


class NoteIn(BaseModel):
    text: str


def verifier_from_env() -> Verifier:
    """Keys come from the service's JWKS, cached and refreshed in the background; revoked
    sessions from the service's Redis when there is one."""
    redis_url = os.environ.get("LATCHKEY_REDIS_URL")
    return Verifier.from_jwks_url(
        os.environ["LATCHKEY_JWKS_URL"],
        issuer=os.environ.get("LATCHKEY_ISSUER", "http://127.0.0.1:8000"),
        audience=os.environ.get("LATCHKEY_AUDIENCE", "latchkey"),
        revoked_sessions=RedisDenyList(redis_url) if redis_url else None,
    )


def create_app(verifier: Verifier | None = None) -> FastAPI:
    # No "from __future__ import annotations" here: FastAPI reads these local aliases at runtime.
    verifier = verifier or verifier_from_env()
    Reader = Annotated[AccessClaims, Depends(require_token(verifier=verifier))]
    Writer = Annotated[AccessClaims, Depends(require_token(scopes=["write"], verifier=verifier))]
    notes: dict[str, list[str]] = {}  # owner (the token's "sub") -> notes

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The keys before the first request; their refresh then runs as a task on this loop.
        await verifier.warm_up_async()
        yield
        await verifier.aclose()

    # exception_handlers: refusals get the OAuth body {"error", "error_description"}.
    app = FastAPI(title="notes", lifespan=lifespan, exception_handlers=exception_handlers)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/notes")
    async def list_notes(claims: Reader) -> dict[str, object]:
        return {"owner": claims["sub"], "notes": notes.get(claims["sub"], [])}

    @app.post("/notes", status_code=201)
    async def add_note(note: NoteIn, claims: Writer) -> dict[str, str]:
        notes.setdefault(claims["sub"], []).append(note.text)
        return {"owner": claims["sub"], "text": note.text}

    return app
