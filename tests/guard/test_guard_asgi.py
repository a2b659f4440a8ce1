"""BearerAuthMiddleware: a pure-ASGI guard in front of a Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latchkey import ManualClock, Verifier
from latchkey.guard import BearerAuthMiddleware
from latchkey.guard.asgi import CLAIMS_KEY

# Marked at collection time: the anyio marker that tests/conftest.py adds after collection
# would replace the @parametrize call specs of async tests.
pytestmark = pytest.mark.anyio

MISSING_CHALLENGE = 'Bearer realm="latchkey"'
INVALID_CHALLENGE = 'Bearer realm="latchkey", error="invalid_token"'


async def whoami(request: Request) -> JSONResponse:
    claims = request.state.claims
    return JSONResponse(
        {
            "sub": claims["sub"],
            "scope": claims["scope"],
            "same": request.scope[CLAIMS_KEY] is claims,
        }
    )


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def guarded_app(verifier: Verifier, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/whoami", whoami), Route("/health", health)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, **options)],
    )


@pytest.fixture
async def client(verifier: Verifier) -> AsyncIterator[httpx.AsyncClient]:
    app = guarded_app(verifier, public_paths={"/health"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_valid_token_puts_claims_in_request_state(client: httpx.AsyncClient, issue) -> None:
    """A valid bearer token reaches the endpoint, its claims in request.state.claims."""
    response = await client.get(
        "/whoami", headers={"Authorization": f"Bearer {issue(scope='read write')}"}
    )
    assert response.status_code == 200
    assert response.json() == {"sub": "user-1", "scope": "read write", "same": True}


async def test_missing_token_gets_a_challenge_without_error_code(
    client: httpx.AsyncClient,
) -> None:
    """No Authorization header: 401 with a bare Bearer challenge (RFC 6750 §3.1)."""
    response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == MISSING_CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30."],
    ids=["garbage", "three-segments", "alg-none"],
)
async def test_bad_token_is_invalid_token(client: httpx.AsyncClient, token: str) -> None:
    """A token that does not verify gets 401 with error="invalid_token"."""
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The access token is invalid or expired.",
    }


async def test_token_of_an_unknown_key_is_invalid(
    client: httpx.AsyncClient, issue, other_key
) -> None:
    """A well-formed token signed by a key the verifier does not trust is rejected."""
    response = await client.get(
        "/whoami", headers={"Authorization": f"Bearer {issue(key=other_key)}"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_expired_token_is_rejected(
    client: httpx.AsyncClient, issue, clock: ManualClock
) -> None:
    """Once the injected clock passes exp, the same token gets 401 invalid_token."""
    headers = {"Authorization": f"Bearer {issue()}"}
    assert (await client.get("/whoami", headers=headers)).status_code == 200
    clock.advance(900)
    response = await client.get("/whoami", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_public_path_passes_without_token(client: httpx.AsyncClient) -> None:
    """A path listed in public_paths is served without any token."""
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_public_path_matches_exactly(client: httpx.AsyncClient) -> None:
    """public_paths are exact paths, not prefixes: /health/x still needs a token."""
    assert (await client.get("/health/x")).status_code == 401


async def test_lifespan_scope_passes_through_untouched(verifier: Verifier) -> None:
    """A non-http scope (lifespan) goes to the app without any token check."""
    seen: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    async def receive() -> dict[str, Any]:
        raise AssertionError("the middleware must not read")

    async def send(_message: dict[str, Any]) -> None:
        raise AssertionError("the middleware must not answer")

    middleware = BearerAuthMiddleware(inner, verifier)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await middleware(scope, receive, send)
    assert seen == [scope]
    assert CLAIMS_KEY not in scope


async def test_app_lifespan_runs_through_the_middleware(verifier: Verifier) -> None:
    """Startup and shutdown of a guarded Starlette app complete, with no token anywhere."""
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(
        routes=[Route("/health", health)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, public_paths={"/health"})],
        lifespan=lifespan,
    )
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert events == ["startup", "shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def _ws_app(verifier: Verifier) -> Starlette:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": websocket.scope[CLAIMS_KEY]["sub"]})
        await websocket.close()

    return Starlette(
        routes=[WebSocketRoute("/ws", echo)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)],
    )


async def _handshake(app: Starlette, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """Drive one WebSocket connection by hand; return every message the app sent."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    return sent


async def test_websocket_handshake_without_token_is_refused(verifier: Verifier) -> None:
    """A WebSocket handshake is guarded too: without a token it is closed before accept."""
    sent = await _handshake(_ws_app(verifier), [])
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_websocket_handshake_with_token_gets_claims(verifier: Verifier, issue) -> None:
    """A WebSocket handshake with a valid bearer token is accepted with the claims in scope."""
    token = issue(subject="ws-user")
    sent = await _handshake(_ws_app(verifier), [(b"authorization", f"Bearer {token}".encode())])
    assert sent[0]["type"] == "websocket.accept"
    assert '"ws-user"' in sent[1]["text"]
