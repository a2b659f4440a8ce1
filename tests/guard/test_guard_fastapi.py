"""require_token as a FastAPI dependency, through the example app of examples/fastapi_api.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import ModuleType

import httpx
import pytest

from latchkey import ManualClock, Verifier

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(
    load_example: Callable[[str], ModuleType], verifier: Verifier
) -> AsyncIterator[httpx.AsyncClient]:
    """The example's app with a verifier that trusts the test's signing key."""
    app = load_example("fastapi_api").create_app(verifier)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_health_is_public(client: httpx.AsyncClient) -> None:
    """/health answers without a token."""
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_valid_token_reads_notes(client: httpx.AsyncClient, issue) -> None:
    """Any valid token may list notes; the dependency hands the claims to the route."""
    response = await client.get("/notes", headers=auth(issue(scope="read")))
    assert response.status_code == 200
    assert response.json() == {"owner": "user-1", "notes": []}


async def test_missing_token_is_401_with_bare_challenge(client: httpx.AsyncClient) -> None:
    """No token: 401 and a challenge without an error code."""
    response = await client.get("/notes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="latchkey"'


async def test_bad_token_is_401_invalid_token(client: httpx.AsyncClient, issue) -> None:
    """A tampered token: 401 with error="invalid_token"."""
    token = issue()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = await client.get("/notes", headers=auth(tampered))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="latchkey", error="invalid_token"'
    )


async def test_expired_token_is_401(client: httpx.AsyncClient, issue, clock: ManualClock) -> None:
    """When the injected clock reaches exp, the dependency rejects the token."""
    token = issue()
    clock.advance(899)
    assert (await client.get("/notes", headers=auth(token))).status_code == 200
    clock.advance(1)
    assert (await client.get("/notes", headers=auth(token))).status_code == 401


async def test_missing_scope_is_403_insufficient_scope(client: httpx.AsyncClient, issue) -> None:
    """A valid token without "write" cannot POST: 403 with error="insufficient_scope"."""
    response = await client.post("/notes", json={"text": "hi"}, headers=auth(issue("read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="latchkey", error="insufficient_scope"'
    )


async def test_write_scope_adds_a_note(client: httpx.AsyncClient, issue) -> None:
    """A token with "write" adds a note, which its owner then lists."""
    token = issue("read write")
    created = await client.post("/notes", json={"text": "buy milk"}, headers=auth(token))
    assert created.status_code == 201
    assert created.json() == {"owner": "user-1", "text": "buy milk"}
    listed = await client.get("/notes", headers=auth(issue("read", subject="user-1")))
    assert listed.json()["notes"] == ["buy milk"]
    other = await client.get("/notes", headers=auth(issue("read", subject="user-2")))
    assert other.json() == {"owner": "user-2", "notes": []}
