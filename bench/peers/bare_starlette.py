"""The floor: a bare Starlette app with PyJWT, no database, under uvicorn.

``/me`` verifies the bearer token and returns its claims; ``/refresh`` verifies a refresh JWT
and signs a new pair; ``/login`` signs a pair for any name it is given. RS256 with a 2048-bit
key, as latchkey signs by default, so that both do the same cryptography. The key pair comes
from the PEM file named by ``BENCH_KEY_FILE`` (written by bench/servers.py).

    BENCH_KEY_FILE=key.pem uvicorn bare_starlette:app --workers 2
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PRIVATE = load_pem_private_key(Path(os.environ["BENCH_KEY_FILE"]).read_bytes(), None)
PUBLIC = PRIVATE.public_key()  # type: ignore[union-attr]
AUDIENCE = "api"
ACCESS_TTL, REFRESH_TTL = 900, 7 * 86400


def _pair(sub: str) -> dict[str, Any]:
    now = int(time.time())
    access = {"sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + ACCESS_TTL, "typ": "access"}
    refresh = {"sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + REFRESH_TTL, "typ": "refresh"}
    return {
        "access_token": jwt.encode({**access, "jti": uuid.uuid4().hex}, PRIVATE, "RS256"),
        "refresh_token": jwt.encode({**refresh, "jti": uuid.uuid4().hex}, PRIVATE, "RS256"),
    }


def _decode(token: str, typ: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, PUBLIC, ["RS256"], audience=AUDIENCE)
    except jwt.PyJWTError:
        return None
    return claims if claims.get("typ") == typ else None


async def login(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse(_pair(str(body["username"])))


async def me(request: Request) -> JSONResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    claims = _decode(token, "access") if scheme.lower() == "bearer" else None
    if claims is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401)
    return JSONResponse({"sub": claims["sub"], "exp": claims["exp"]})


async def refresh(request: Request) -> JSONResponse:
    body = await request.json()
    claims = _decode(str(body.get("refresh_token", "")), "refresh")
    if claims is None:
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    return JSONResponse(_pair(claims["sub"]))


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/me", me),
        Route("/refresh", refresh, methods=["POST"]),
    ]
)
