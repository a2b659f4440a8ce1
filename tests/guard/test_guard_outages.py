"""Every guard while the key server fails, with the cached keys past their max-age.

- A token whose key id is held is answered at once (200): the request never waits for the
  refresh, which the key server holds open until the test releases it.
- A token naming an unknown key id gets 503 with ``Retry-After`` and an OAuth-style body,
  never 401, within the verifier's ``refresh_deadline``: answered while the fetch it asked
  for is still held open.
- The async guards fetch on their event loop (a task, no thread), and never block it: the
  test's own coroutines, on the same loop, keep running and being answered while the fetch
  hangs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from types import ModuleType

import anyio
import httpx
import pytest
from keyserver import KeyServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latchkey import ManualClock, Verifier
from latchkey.guard import BearerAuthMiddleware, require_token
from latchkey.guard.asgi import CLAIMS_KEY

INTERVAL = 30.0
QUICK = 0.05  # refresh_deadline: a request stops waiting long before the key server answers
UNAVAILABLE = "temporarily_unavailable"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refresh_threads() -> int:
    return sum(thread.name == "latchkey-jwks" for thread in threading.enumerate())


def assert_unavailable(status: int, headers: httpx.Headers, body: bytes) -> None:
    """503, Retry-After in whole seconds, not cached, no bearer challenge, OAuth body."""
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    assert headers["cache-control"] == "no-store"
    assert "www-authenticate" not in headers
    assert json.loads(body)["error"] == UNAVAILABLE


@pytest.fixture
def outage(
    key_server: KeyServer, remote_verifier, clock: ManualClock
) -> Callable[[Verifier], None]:
    """``outage(verifier)``: the key server hangs from now and the held keys are stale."""

    def start(verifier: Verifier) -> None:
        key_server.hang()
        clock.advance(400)

    return start


@pytest.fixture
def quick_verifier(remote_verifier) -> Verifier:
    return remote_verifier(min_refetch_interval=INTERVAL, refresh_deadline=QUICK)


async def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def held_open(key_server: KeyServer, requests: int) -> None:
    """Wait, off the loop, until the key server holds the refresh open."""
    await anyio.to_thread.run_sync(key_server.wait_for, requests)
    assert key_server.holding == 1


# --- the ASGI middleware -------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.scope[CLAIMS_KEY]["sub"]})


@pytest.fixture
async def asgi(quick_verifier: Verifier) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=quick_verifier)],
    )
    async with await _client(app) as client:
        yield client


async def test_asgi_known_kid_is_answered_while_the_refresh_hangs(
    asgi: httpx.AsyncClient, quick_verifier: Verifier, key_server: KeyServer, outage, issue
) -> None:
    """Stale keys, hung key server: every request is answered at once, from the held keys,
    by a refresh task on the loop (no thread) that never blocks it."""
    threads = refresh_threads()
    assert await quick_verifier.warm_up_async()
    outage(quick_verifier)
    first = await asgi.get("/whoami", headers=auth(issue()))
    assert first.status_code == 200
    await held_open(key_server, 2)
    async with anyio.create_task_group() as group:
        answers: list[int] = []

        async def one(n: int) -> None:
            answers.append(
                (await asgi.get("/whoami", headers=auth(issue(f"user-{n}")))).status_code
            )

        for n in range(50):
            group.start_soon(one, n)
    assert answers == [200] * 50
    assert key_server.holding == 1  # all answered while the refresh was held open
    assert key_server.requests == 2
    assert refresh_threads() == threads


async def test_asgi_unknown_kid_is_503_not_401(
    asgi: httpx.AsyncClient,
    quick_verifier: Verifier,
    key_server: KeyServer,
    outage,
    issue,
    other_key,
) -> None:
    """An unknown key id while the key server hangs: 503, Retry-After, OAuth body, answered
    while the fetch it asked for is still open."""
    assert await quick_verifier.warm_up_async()
    outage(quick_verifier)
    response = await asgi.get("/whoami", headers=auth(issue(key=other_key)))
    assert_unavailable(response.status_code, response.headers, response.content)
    assert response.json()["error_description"]
    await held_open(key_server, 2)
    assert (await asgi.get("/whoami", headers=auth(issue()))).status_code == 200


async def test_asgi_without_keys_is_503(
    asgi: httpx.AsyncClient, key_server: KeyServer, issue
) -> None:
    """Before the first fetch succeeded (key server refusing connections): 503, not 401."""
    key_server.refuse()
    response = await asgi.get("/whoami", headers=auth(issue()))
    assert_unavailable(response.status_code, response.headers, response.content)


async def test_asgi_websocket_handshake_is_closed_try_again_later(
    quick_verifier: Verifier, key_server: KeyServer, issue
) -> None:
    """A WebSocket handshake the guard cannot check now is closed with 1013 (try again)."""
    key_server.refuse()
    sent: list[dict[str, object]] = []

    async def app(scope, receive, send) -> None:  # pragma: no cover - never reached
        raise AssertionError("the handshake must not reach the app")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    guard = BearerAuthMiddleware(app, quick_verifier)
    header = f"Bearer {issue()}".encode()
    scope = {"type": "websocket", "path": "/ws", "headers": [(b"authorization", header)]}
    await guard(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1013}]


# --- the FastAPI / Starlette dependency ----------------------------------------------------


@pytest.fixture
async def fastapi(
    load_example: Callable[[str], ModuleType], quick_verifier: Verifier
) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(load_example("fastapi_api").create_app(quick_verifier)) as client:
        yield client


async def test_fastapi_dependency_during_an_outage(
    fastapi: httpx.AsyncClient,
    quick_verifier: Verifier,
    key_server: KeyServer,
    outage,
    issue,
    other_key,
) -> None:
    """The dependency answers a held key id at once and an unknown one with 503 (the
    example installs latchkey.guard.exception_handlers: the body is OAuth-style)."""
    assert await quick_verifier.warm_up_async()
    outage(quick_verifier)
    assert (await fastapi.get("/notes", headers=auth(issue()))).status_code == 200
    await held_open(key_server, 2)
    response = await fastapi.get("/notes", headers=auth(issue(key=other_key)))
    assert_unavailable(response.status_code, response.headers, response.content)
    assert key_server.holding == 1
    missing = await fastapi.get("/notes")  # the handlers give 401s the same body shape
    assert missing.status_code == 401
    assert missing.json()["error"] == "invalid_token"


async def test_starlette_dependency_without_handlers_is_still_503(
    quick_verifier: Verifier, key_server: KeyServer, issue
) -> None:
    """Without the exception handlers the body is Starlette's own, but the status is 503 and
    Retry-After is sent: a client never takes it for a bad token."""
    need_token = require_token(verifier=quick_verifier)

    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"sub": (await need_token(request))["sub"]})

    key_server.refuse()
    async with await _client(Starlette(routes=[Route("/show", show)])) as client:
        response = await client.get("/show", headers=auth(issue()))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "www-authenticate" not in response.headers


# --- Flask (a thread runs the refresh) ------------------------------------------------------


def test_flask_during_an_outage(
    load_example: Callable[[str], ModuleType],
    quick_verifier: Verifier,
    key_server: KeyServer,
    outage,
    issue,
    other_key,
) -> None:
    """create_app warms the keys up; then with the key server hung and the keys stale, a held
    key id is answered at once and an unknown one gets 503 within refresh_deadline."""
    client = load_example("flask_api").create_app(quick_verifier).test_client()
    assert key_server.requests == 1  # warm start
    outage(quick_verifier)
    assert client.get("/notes", headers=auth(issue())).status_code == 200
    key_server.wait_for(2)
    for _ in range(20):
        assert client.get("/notes", headers=auth(issue())).status_code == 200
    response = client.get("/notes", headers=auth(issue(key=other_key)))
    assert_unavailable(response.status_code, httpx.Headers(dict(response.headers)), response.data)
    assert key_server.holding == 1
    assert key_server.requests == 2


# --- Django ---------------------------------------------------------------------------------


async def test_django_during_an_outage(
    load_example: Callable[[str], ModuleType],
    quick_verifier: Verifier,
    key_server: KeyServer,
    outage,
    issue,
    other_key,
) -> None:
    """The example's ASGI app (sync views, run in a thread) and an async view: a held key id
    is answered at once, an unknown one gets 503 with Retry-After."""
    pytest.importorskip("django")
    example = load_example("django_api")
    app = example.create_app(quick_verifier)  # warms the keys up
    assert key_server.requests == 1
    outage(quick_verifier)
    async with await _client(app) as client:
        assert (await client.get("/notes", headers=auth(issue()))).status_code == 200
        await held_open(key_server, 2)
        response = await client.get("/notes", headers=auth(issue(key=other_key)))
    assert_unavailable(response.status_code, response.headers, response.content)

    @example.require_token(verifier=quick_verifier)
    async def me(request):
        return example.JsonResponse({"sub": request.claims["sub"]})

    from django.test import RequestFactory

    factory = RequestFactory()
    assert (await me(factory.get("/me", headers=auth(issue())))).status_code == 200
    refused = await me(factory.get("/me", headers=auth(issue(key=other_key))))
    assert_unavailable(refused.status_code, httpx.Headers(dict(refused.items())), refused.content)
    assert key_server.holding == 1
