"""require_token in plain Starlette endpoints, and the example of examples/starlette_api.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import ModuleType

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latchkey import Verifier
from latchkey.guard import require_token
from latchkey.guard.starlette import VERIFIER_STATE

pytestmark = pytest.mark.anyio


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def endpoint_app(verifier: Verifier | None) -> Starlette:
    """Endpoints that call require_token themselves; no middleware."""
    read = require_token(verifier=verifier)
    write = require_token(["write"], verifier=verifier)

    async def show(request: Request) -> JSONResponse:
        claims = await read(request)
        return JSONResponse({"sub": claims["sub"]})

    async def change(request: Request) -> JSONResponse:
        claims = await write(request)
        return JSONResponse({"sub": claims["sub"], "scope": claims["scope"]})

    return Starlette(routes=[Route("/show", show), Route("/change", change, methods=["POST"])])


async def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture(params=["argument", "app-state"])
async def client(
    request: pytest.FixtureRequest, verifier: Verifier
) -> AsyncIterator[httpx.AsyncClient]:
    """The verifier is passed to require_token, or found in app.state.latchkey_verifier."""
    if request.param == "argument":
        app = endpoint_app(verifier)
    else:
        app = endpoint_app(None)
        setattr(app.state, VERIFIER_STATE, verifier)
    async with await _client(app) as c:
        yield c


async def test_endpoint_gets_claims_of_valid_token(client: httpx.AsyncClient, issue) -> None:
    """``await require_token()(request)`` returns the claims of a valid token."""
    response = await client.get("/show", headers=auth(issue(subject="bob")))
    assert response.status_code == 200
    assert response.json() == {"sub": "bob"}


async def test_endpoint_without_token_is_401(client: httpx.AsyncClient) -> None:
    """Without a token the HTTPException becomes 401 with the bare challenge."""
    response = await client.get("/show")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="latchkey"'


async def test_endpoint_with_bad_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    """A token that does not verify is 401 with error="invalid_token"."""
    response = await client.get("/show", headers=auth("eyJ.eyJ.sig"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_endpoint_missing_scope_is_403(client: httpx.AsyncClient, issue) -> None:
    """A valid token without the required scope is 403 insufficient_scope."""
    response = await client.post("/change", headers=auth(issue("read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="latchkey", error="insufficient_scope"'
    )
    allowed = await client.post("/change", headers=auth(issue("read write")))
    assert allowed.json() == {"sub": "user-1", "scope": "read write"}


@pytest.fixture
async def example(
    load_example: Callable[[str], ModuleType], verifier: Verifier
) -> AsyncIterator[httpx.AsyncClient]:
    """The Starlette example, guarded by BearerAuthMiddleware, with the test's verifier."""
    async with await _client(load_example("starlette_api").create_app(verifier)) as c:
        yield c


async def test_example_health_is_public(example: httpx.AsyncClient) -> None:
    """The example lists /health in public_paths."""
    assert (await example.get("/health")).json() == {"status": "ok"}


async def test_example_guards_notes(example: httpx.AsyncClient, issue) -> None:
    """The example's notes need a token to read and the "write" scope to add."""
    assert (await example.get("/notes")).status_code == 401
    reader, writer = auth(issue("read")), auth(issue("read write"))
    assert (await example.get("/notes", headers=reader)).json() == {"owner": "user-1", "notes": []}
    denied = await example.post("/notes", json={"text": "x"}, headers=reader)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    created = await example.post("/notes", json={"text": "x"}, headers=writer)
    assert created.status_code == 201
    assert (await example.get("/notes", headers=reader)).json()["notes"] == ["x"]
