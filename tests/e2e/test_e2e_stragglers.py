"""A refresh request that arrives late, after its retry and a further rotation, against a real
``latchkey serve``: refused, and the session lives on (docs/sessions.md "Stragglers")."""

from __future__ import annotations

import httpx
import pytest

from storm import HeldBackRequest

pytestmark = pytest.mark.e2e


def test_straggler_does_not_end_the_session(shared_latchkey, login) -> None:
    """T0's first request is held back; its retry rotates T0 → T1, then T1 → T2; then T0's
    first request completes: 401 invalid_grant, and T2 and its access token still work."""
    server = shared_latchkey.server
    with server.client() as client:
        pair = login(client, "writer")
        straggler = HeldBackRequest(server.port, pair["refresh_token"])
        try:
            retry = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert retry.status_code == 200, retry.text
            onward = client.post(
                "/auth/refresh", json={"refresh_token": retry.json()["refresh_token"]}
            )
            assert onward.status_code == 200, onward.text
            newest = onward.json()
        finally:
            status, body = straggler.finish()

        assert status == 401
        assert body["error"] == "invalid_grant"
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {newest['access_token']}"})
        assert me.status_code == 200, me.text
        after = client.post("/auth/refresh", json={"refresh_token": newest["refresh_token"]})
        assert after.status_code == 200, after.text
        sessions = client.get(
            "/auth/sessions",
            headers={"Authorization": f"Bearer {after.json()['access_token']}"},
        )
        assert sessions.status_code == 200
        assert any(s["current"] for s in sessions.json()["sessions"])


def test_held_back_request_reaches_the_server_before_it_finishes(shared_latchkey, login) -> None:
    """The reproduction is sound: a held-back request alone, once finished, is an ordinary
    refresh (the server kept it waiting, it did not drop it)."""
    server = shared_latchkey.server
    with server.client() as client:
        pair = login(client, "writer")
    request = HeldBackRequest(server.port, pair["refresh_token"])
    status, body = request.finish()
    assert status == 200, body
    assert body["refresh_token"] != pair["refresh_token"]
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        onward = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert onward.status_code == 200
