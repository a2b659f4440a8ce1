"""The Django example of examples/django_api.py: its ``require_token`` decorator, through the
example's ASGI app (with Django's CSRF middleware on) and directly on views.

Django's settings are process-wide and can be configured once: the example guards its
``settings.configure`` and each ``create_app(verifier)`` only swaps the verifier in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from latchkey import ManualClock, SigningKey, Verifier

pytest.importorskip("django")

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

MISSING = 'Bearer realm="latchkey"'
INVALID = 'Bearer realm="latchkey", error="invalid_token"'
NO_SCOPE = 'Bearer realm="latchkey", error="insufficient_scope"'


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def example(load_example: Callable[[str], ModuleType]) -> ModuleType:
    return load_example("django_api")


async def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(example: ModuleType, verifier: Verifier) -> AsyncIterator[httpx.AsyncClient]:
    """The example's ASGI app, with a verifier that trusts the test's signing key."""
    async with await _client(example.create_app(verifier)) as c:
        yield c


async def test_health_is_public(client: httpx.AsyncClient) -> None:
    """/health answers without a token."""
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_valid_token_reads_notes(client: httpx.AsyncClient, issue) -> None:
    """Any valid token may list notes; the view finds the claims on request.claims."""
    response = await client.get("/notes", headers=auth(issue("read", subject="carol")))
    assert response.status_code == 200
    assert response.json() == {"owner": "carol", "notes": []}
    assert "Authorization" in response.headers["vary"]


async def test_missing_token_is_401_with_bare_challenge(client: httpx.AsyncClient) -> None:
    """No token: 401, an OAuth-style body and a challenge without an error code."""
    response = await client.get("/notes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == MISSING
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "An access token is required.",
    }


async def test_basic_credentials_count_as_missing(client: httpx.AsyncClient) -> None:
    """An Authorization: Basic header gets the missing-token challenge."""
    response = await client.get("/notes", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == MISSING


async def test_bad_signature_is_401_invalid_token(
    client: httpx.AsyncClient, issue, other_key: SigningKey
) -> None:
    """A token signed by an untrusted key, or tampered with: 401 error="invalid_token"."""
    token = issue()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (issue(key=other_key), tampered, "eyJ.eyJ.sig"):
        response = await client.get("/notes", headers=auth(bad))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID
        assert response.json() == {
            "error": "invalid_token",
            "error_description": "The access token is invalid or expired.",
        }


async def test_expired_token_is_401(client: httpx.AsyncClient, issue, clock: ManualClock) -> None:
    """When the injected clock reaches exp, the decorator rejects the token."""
    token = issue()
    clock.advance(899)
    assert (await client.get("/notes", headers=auth(token))).status_code == 200
    clock.advance(1)
    response = await client.get("/notes", headers=auth(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID


async def test_missing_scope_is_403_insufficient_scope(client: httpx.AsyncClient, issue) -> None:
    """A valid token without "write" cannot POST: 403 with error="insufficient_scope"."""
    response = await client.post("/notes", json={"text": "hi"}, headers=auth(issue("read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == NO_SCOPE
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "The access token does not carry the required scope.",
    }


async def test_write_scope_adds_a_note_despite_csrf_middleware(
    client: httpx.AsyncClient, issue
) -> None:
    """With "write" a POST adds a note (CsrfViewMiddleware is on, with no CSRF cookie: the
    decorator's csrf_exempt lets bearer requests through); notes are kept per subject."""
    created = await client.post(
        "/notes", json={"text": "buy milk"}, headers=auth(issue("read write"))
    )
    assert created.status_code == 201
    assert created.json() == {"owner": "user-1", "text": "buy milk"}
    listed = await client.get("/notes", headers=auth(issue("read")))
    assert listed.json() == {"owner": "user-1", "notes": ["buy milk"]}
    other = await client.get("/notes", headers=auth(issue("read", subject="user-2")))
    assert other.json() == {"owner": "user-2", "notes": []}


async def test_post_without_token_is_401_not_a_csrf_failure(client: httpx.AsyncClient) -> None:
    """An unauthenticated POST gets the bearer 401, not Django's CSRF 403 page."""
    response = await client.post("/notes", json={"text": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == MISSING


async def test_malformed_body_is_400(client: httpx.AsyncClient, issue) -> None:
    """A body that is not a JSON object is 400 invalid_request."""
    response = await client.post("/notes", content=b"[1, 2]", headers=auth(issue("read write")))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_other_methods_are_405(client: httpx.AsyncClient, issue) -> None:
    """Only GET and POST are routed to /notes."""
    assert (await client.delete("/notes", headers=auth(issue()))).status_code == 405


async def test_revoked_session_is_401(
    example: ModuleType, signing_key: SigningKey, verifier_options: dict[str, object], issue
) -> None:
    """A verifier with a deny-list (RedisDenyList in production, a set here) refuses the tokens
    of a revoked session at once."""
    revoked = Verifier([signing_key.public], revoked_sessions={"sid-1"}, **verifier_options)
    async with await _client(example.create_app(revoked)) as c:
        response = await c.get("/notes", headers=auth(issue()))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID


# --- the decorator on its own, with Django's RequestFactory ----------------------------------


@pytest.fixture
def factory(example: ModuleType, verifier: Verifier):
    example.configure(verifier, LOGGING_CONFIG=None)  # whichever test configures Django first
    from django.test import RequestFactory

    return RequestFactory()


def test_claims_are_on_the_request(example: ModuleType, factory, verifier: Verifier, issue):
    """A sync view runs with request.claims set to the token's claims."""

    @example.require_token(scopes=["read"], verifier=verifier)
    def me(request):
        return example.JsonResponse(dict(request.claims))

    response = me(factory.get("/me", headers=auth(issue("read", subject="dave"))))
    assert response.status_code == 200
    claims = json.loads(response.content)
    assert (claims["sub"], claims["scope"], claims["aud"]) == ("dave", "read", "notes-api")


def test_rejected_request_never_runs_the_view(example: ModuleType, factory) -> None:
    """Without a token the view is not called and no claims are set; the verifier comes from
    settings.LATCHKEY_VERIFIER when none is given."""
    calls: list[str] = []

    @example.require_token()
    def me(request):
        calls.append("view")
        return example.JsonResponse({})

    request = factory.get("/me")
    response = me(request)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == MISSING
    assert calls == []
    assert not hasattr(request, "claims")


async def test_async_views_are_guarded_too(example: ModuleType, factory, issue) -> None:
    """On an async view the decorator returns an async view, with the same checks."""

    @example.require_token(scopes=["write"])
    async def change(request):
        return example.JsonResponse({"sub": request.claims["sub"]})

    from asgiref.sync import iscoroutinefunction

    assert iscoroutinefunction(change)
    assert (await change(factory.post("/x"))).status_code == 401
    denied = await change(factory.post("/x", headers=auth(issue("read"))))
    assert denied.status_code == 403
    assert denied["WWW-Authenticate"] == NO_SCOPE
    allowed = await change(factory.post("/x", headers=auth(issue("read write"))))
    assert allowed.status_code == 200
    assert json.loads(allowed.content) == {"sub": "user-1"}


def test_runnable_as_a_script() -> None:
    """``python examples/django_api.py <command>`` configures Django and runs the command: here
    ``check`` (the same settings and URLs as ``runserver``), in a fresh process."""
    env = {**os.environ, "LATCHKEY_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json"}
    env.pop("LATCHKEY_REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "django_api.py"), "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
