"""The Flask decorator ``latchkey.guard.flask.require_token``, through Flask's test client."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import flask
import pytest
from flask.testing import FlaskClient

from latchkey import ManualClock, Verifier
from latchkey.guard.flask import require_token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(load_example: Callable[[str], ModuleType], verifier: Verifier) -> FlaskClient:
    """A test client of the Flask example, with the test's verifier."""
    return load_example("flask_api").create_app(verifier).test_client()


def test_health_is_public(client: FlaskClient) -> None:
    """/health needs no token."""
    assert client.get("/health").get_json() == {"status": "ok"}


def test_valid_token_is_accepted(client: FlaskClient, issue) -> None:
    """A valid token reads the notes; the view sees its subject."""
    response = client.get("/notes", headers=auth(issue(subject="carol")))
    assert response.status_code == 200
    assert response.get_json() == {"owner": "carol", "notes": []}


def test_missing_token_is_401_with_bare_challenge(client: FlaskClient) -> None:
    """No token: 401 JSON and a challenge without an error code."""
    response = client.get("/notes")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="latchkey"'
    assert response.get_json()["error"] == "invalid_token"


def test_basic_credentials_count_as_missing(client: FlaskClient) -> None:
    """An Authorization: Basic header gets the missing-token challenge."""
    response = client.get("/notes", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="latchkey"'


def test_bad_token_is_401_invalid_token(client: FlaskClient, issue, other_key) -> None:
    """A token signed by an untrusted key: 401 with error="invalid_token"."""
    response = client.get("/notes", headers=auth(issue(key=other_key)))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="latchkey", error="invalid_token"'
    )
    assert response.get_json() == {
        "error": "invalid_token",
        "error_description": "The access token is invalid or expired.",
    }


def test_expired_token_is_401(client: FlaskClient, issue, clock: ManualClock) -> None:
    """When the injected clock passes exp, the decorator rejects the token."""
    token = issue()
    clock.advance(900)
    assert client.get("/notes", headers=auth(token)).status_code == 401


def test_insufficient_scope_is_403(client: FlaskClient, issue) -> None:
    """A token without "write" cannot POST: 403 insufficient_scope; with it, 201."""
    denied = client.post("/notes", json={"text": "x"}, headers=auth(issue("read")))
    assert denied.status_code == 403
    assert denied.headers["WWW-Authenticate"] == (
        'Bearer realm="latchkey", error="insufficient_scope"'
    )
    assert denied.get_json()["error"] == "insufficient_scope"
    created = client.post("/notes", json={"text": "x"}, headers=auth(issue("read write")))
    assert created.status_code == 201
    assert client.get("/notes", headers=auth(issue())).get_json()["notes"] == ["x"]


def test_claims_are_in_flask_g(verifier: Verifier, issue) -> None:
    """After the decorator accepted a token, flask.g.latchkey_claims holds its claims."""
    app = flask.Flask(__name__)

    @app.get("/me")
    @require_token(verifier, scopes=["read"])
    def me() -> dict[str, str]:
        return {"sub": flask.g.latchkey_claims["sub"]}

    with app.test_client() as client:
        assert client.get("/me", headers=auth(issue("read", subject="dave"))).status_code == 200
        claims = flask.g.latchkey_claims  # the last request's context is kept inside `with`
    assert claims["sub"] == "dave"
    assert claims["scope"] == "read"
    assert claims["aud"] == "notes-api"


def test_rejected_request_leaves_flask_g_empty(verifier: Verifier) -> None:
    """A rejected request never runs the view and sets no claims in flask.g."""
    app = flask.Flask(__name__)
    calls: list[str] = []

    @app.get("/me")
    @require_token(verifier)
    def me() -> str:
        calls.append("view")
        return "ok"

    with app.test_client() as client:
        assert client.get("/me").status_code == 401
        assert "latchkey_claims" not in flask.g
    assert calls == []
