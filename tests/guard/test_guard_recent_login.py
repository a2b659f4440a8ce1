"""``max_age`` in every guard: an operation that needs a recent login (the token's
``auth_time``) answers 401 ``insufficient_user_authentication`` with ``max_age`` (RFC 9470 §3)
once the login is older; the token itself stays good for everything else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latchkey import InsufficientUserAuthentication, ManualClock, SigningKey, Verifier
from latchkey.core.access import AccessTokenIssuer
from latchkey.core.verifier import AccessClaims, require_recent_login
from latchkey.guard import BearerAuthMiddleware, exception_handlers, require_token
from latchkey.guard.flask import require_token as flask_require_token

pytestmark = pytest.mark.anyio

MAX_AGE = 300
STEP_UP = (
    'Bearer realm="latchkey", error="insufficient_user_authentication", '
    'error_description="A more recent sign-in is required: enter your password again.", '
    f'max_age="{MAX_AGE}"'
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_step_up(status: int, raw_headers: dict[str, str], body: dict[str, str]) -> None:
    headers = {name.lower(): value for name, value in raw_headers.items()}
    assert status == 401
    assert headers["www-authenticate"] == STEP_UP
    assert headers["cache-control"] == "no-store"
    assert body["error"] == "insufficient_user_authentication"
    assert body["error_description"]


def test_require_recent_login_is_a_pure_rule() -> None:
    """Within max_age (inclusive) passes; older, missing or non-numeric auth_time refused."""
    require_recent_login({"auth_time": 1000}, 300, 1300)
    require_recent_login({"auth_time": 1000.5}, 300, 1000)
    for claims, now in (
        ({"auth_time": 1000}, 1301),
        ({}, 1000),
        ({"auth_time": "1000"}, 1000),
        ({"auth_time": True}, 1000),
        ({"auth_time": None}, 1000),
    ):
        with pytest.raises(InsufficientUserAuthentication) as caught:
            require_recent_login(claims, 300, now)
        assert caught.value.max_age == 300


def test_token_without_auth_time_is_never_recent(
    signing_key: SigningKey, verifier: Verifier, clock: ManualClock
) -> None:
    """A token issued with an auth_time of long ago verifies, but is not a recent login."""
    issuer = AccessTokenIssuer(
        signing_key, issuer=verifier.issuer, audience=verifier.audience, ttl=900, clock=clock
    )
    token = issuer.issue(subject="u", sid="s", scope="", auth_time=0).token
    claims = verifier.verify(token)
    with pytest.raises(InsufficientUserAuthentication):
        verifier.require_recent_login(claims, MAX_AGE)


# --- Starlette and FastAPI: require_token(max_age=...) --------------------------------------


def starlette_app(verifier: Verifier, *, middleware: bool) -> Starlette:
    sensitive = require_token(verifier=verifier, max_age=MAX_AGE)
    plain = require_token(verifier=verifier)

    async def delete_everything(request: Request) -> JSONResponse:
        claims = await sensitive(request)
        return JSONResponse({"sub": claims["sub"]})

    async def read(request: Request) -> JSONResponse:
        claims = await plain(request)
        return JSONResponse({"sub": claims["sub"]})

    return Starlette(
        routes=[
            Route("/danger", delete_everything, methods=["POST"]),
            Route("/read", read),
        ],
        middleware=([Middleware(BearerAuthMiddleware, verifier=verifier)] if middleware else []),
        exception_handlers=dict(exception_handlers),
    )


def fastapi_app(verifier: Verifier) -> FastAPI:
    app = FastAPI(exception_handlers=dict(exception_handlers))

    @app.post("/danger")
    async def danger(
        claims: AccessClaims = Depends(require_token(verifier=verifier, max_age=MAX_AGE)),  # noqa: B008
    ) -> dict[str, str]:
        return {"sub": claims["sub"]}

    @app.get("/read")
    async def read(
        claims: AccessClaims = Depends(require_token(verifier=verifier)),  # noqa: B008
    ) -> dict[str, str]:
        return {"sub": claims["sub"]}

    return app


@pytest.fixture(params=["starlette", "starlette-behind-middleware", "fastapi"])
async def client(
    request: pytest.FixtureRequest, verifier: Verifier
) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "fastapi":
        app: Starlette = fastapi_app(verifier)
    else:
        app = starlette_app(verifier, middleware=request.param.endswith("middleware"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_recent_login_passes(client: httpx.AsyncClient, issue, clock: ManualClock) -> None:
    token = issue()
    clock.advance(MAX_AGE)  # exactly max_age old: still recent
    response = await client.post("/danger", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "user-1"}


async def test_old_login_is_refused_with_max_age(
    client: httpx.AsyncClient, issue, clock: ManualClock
) -> None:
    """Past max_age: 401 with the RFC 9470 challenge; the same token still reads."""
    token = issue()
    clock.advance(MAX_AGE + 1)
    response = await client.post("/danger", headers=auth(token))
    assert_step_up(response.status_code, dict(response.headers), response.json())
    assert (await client.get("/read", headers=auth(token))).status_code == 200


async def test_bad_token_is_still_invalid_token(client: httpx.AsyncClient, issue) -> None:
    """A bad token is refused as before, not asked for a recent login."""
    response = await client.post("/danger", headers=auth(issue() + "x"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="latchkey", error="invalid_token"'


# --- the ASGI middleware: max_age for every request ------------------------------------------


async def test_asgi_middleware_max_age(verifier: Verifier, issue, clock: ManualClock) -> None:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.state.claims["sub"]})

    app = Starlette(
        routes=[Route("/ok", ok)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, max_age=MAX_AGE)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        token = issue()
        assert (await c.get("/ok", headers=auth(token))).status_code == 200
        clock.advance(MAX_AGE + 1)
        response = await c.get("/ok", headers=auth(token))
        assert_step_up(response.status_code, dict(response.headers), response.json())


# --- Flask -----------------------------------------------------------------------------------


def test_flask_max_age(verifier: Verifier, issue, clock: ManualClock) -> None:
    app = flask.Flask("recent-login")

    @app.post("/danger")
    @flask_require_token(verifier, max_age=MAX_AGE)
    def danger() -> dict[str, str]:
        return {"sub": flask.g.latchkey_claims["sub"]}

    @app.get("/read")
    @flask_require_token(verifier)
    def read() -> dict[str, str]:
        return {"sub": flask.g.latchkey_claims["sub"]}

    client = app.test_client()
    token = issue()
    assert client.post("/danger", headers=auth(token)).status_code == 200
    clock.advance(MAX_AGE + 1)
    response = client.post("/danger", headers=auth(token))
    assert_step_up(response.status_code, dict(response.headers), response.get_json())
    assert client.get("/read", headers=auth(token)).status_code == 200
