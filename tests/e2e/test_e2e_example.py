"""examples/fastapi_api.py as a real uvicorn process, trusting a real latchkey's JWKS."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_fastapi_example_accepts_latchkey_tokens(shared_latchkey, processes, login) -> None:
    """Tokens from /auth/login open GET /notes; no token is 401; POST needs the write scope."""
    latchkey = shared_latchkey.server
    api = processes.start_fastapi_example(latchkey)
    with latchkey.client() as client:
        writer = login(client, "writer")
        reader = login(client, "reader")
        writer_id = client.get("/auth/me", headers=auth(writer["access_token"])).json()["sub"]

    with api.client() as client:
        assert client.get("/health").json() == {"status": "ok"}

        anonymous = client.get("/notes")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="latchkey"'

        forged = client.get("/notes", headers=auth(writer["access_token"][:-6] + "AAAAAA"))
        assert forged.status_code == 401
        assert 'error="invalid_token"' in forged.headers["www-authenticate"]

        listed = client.get("/notes", headers=auth(writer["access_token"]))
        assert listed.status_code == 200
        assert listed.json() == {"owner": writer_id, "notes": []}

        denied = client.post(
            "/notes", json={"text": "from reader"}, headers=auth(reader["access_token"])
        )
        assert denied.status_code == 403
        assert denied.headers["www-authenticate"] == (
            'Bearer realm="latchkey", error="insufficient_scope"'
        )
        assert client.get("/notes", headers=auth(reader["access_token"])).status_code == 200

        created = client.post(
            "/notes", json={"text": "from writer"}, headers=auth(writer["access_token"])
        )
        assert created.status_code == 201
        after = client.get("/notes", headers=auth(writer["access_token"]))
        assert after.json()["notes"] == ["from writer"]
