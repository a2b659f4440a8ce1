"""Reading the bearer token from an Authorization header (RFC 6750 §2.1) and the challenge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from latchkey import InsufficientScope, InvalidToken, Verifier
from latchkey.guard import BearerAuthMiddleware
from latchkey.guard.bearer import MissingToken, bearer_token, challenge

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc.DEF-_~+/=",
        "bearer abc.DEF-_~+/=",
        "BEARER abc.DEF-_~+/=",
        "BeArEr abc.DEF-_~+/=",
        "Bearer    abc.DEF-_~+/=",
        "  Bearer abc.DEF-_~+/=  ",
    ],
)
def test_bearer_scheme_is_case_insensitive_and_tolerates_spaces(header: str) -> None:
    """Any case of "Bearer", several spaces and surrounding whitespace all yield the token."""
    assert bearer_token(header) == "abc.DEF-_~+/="


@pytest.mark.parametrize(
    "header", [None, "", "Basic YWxpY2U6c2VjcmV0", "Digest username=alice", "Token abc"]
)
def test_no_bearer_credentials_is_a_missing_token(header: str | None) -> None:
    """No header, or another scheme such as Basic, counts as "no token" (no error code)."""
    with pytest.raises(MissingToken):
        bearer_token(header)


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a,b", "Bearerabc", "Bearer\tabc"]
)
def test_malformed_bearer_credentials_are_an_invalid_token(header: str) -> None:
    """A Bearer header without exactly one well-formed b64token is invalid_token."""
    with pytest.raises(InvalidToken) as info:
        bearer_token(header)
    assert not isinstance(info.value, MissingToken)


def test_challenges() -> None:
    """The challenge carries the realm, plus the error code unless the token was missing."""
    assert challenge(MissingToken()) == 'Bearer realm="latchkey"'
    assert challenge(InvalidToken()) == 'Bearer realm="latchkey", error="invalid_token"'
    assert challenge(InsufficientScope(), realm="notes") == (
        'Bearer realm="notes", error="insufficient_scope"'
    )


async def ok(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
async def client(verifier: Verifier) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Route("/", ok)], middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  "])
async def test_middleware_accepts_any_case_and_extra_spaces(
    client: httpx.AsyncClient, issue, scheme: str
) -> None:
    """Through the middleware too, "bearer"/"BEARER" and extra spaces are accepted."""
    response = await client.get("/", headers={"Authorization": f"{scheme} {issue()}"})
    assert response.status_code == 200


async def test_middleware_answers_basic_with_a_missing_token_challenge(
    client: httpx.AsyncClient,
) -> None:
    """An Authorization: Basic header gets the same 401 challenge as no header at all."""
    response = await client.get("/", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="latchkey"'
