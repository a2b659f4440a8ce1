"""The README's "five minutes with curl" walkthrough, against a real ``latchkey serve``."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

GRACE = 1  # LATCHKEY_REFRESH_GRACE of the server, in seconds
PAST_GRACE = GRACE + 0.5  # how long after a rotation a replay is surely outside the window


def wait_until(deadline: float) -> None:
    """Block until time.monotonic() reaches ``deadline``: the server's real clock must move."""
    while time.monotonic() < deadline:
        time.sleep(0.05)


def auth(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def test_readme_walkthrough(processes, login) -> None:
    """user add, login, /auth/me, refresh, retry, replay after the grace window, logout."""
    data_dir = processes.workdir / "data"
    server = processes.start_latchkey(data_dir, LATCHKEY_REFRESH_GRACE=str(GRACE))

    added = processes.cli(
        data_dir, "user", "add", "alice", "--password-stdin", stdin=processes.password + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("created user alice ")

    with server.client() as client:
        with_newline = {"username": "alice", "password": processes.password + "\n"}
        assert client.post("/auth/login", json=with_newline).status_code == 401

        logged_in = client.post(
            "/auth/login", json={"username": "alice", "password": processes.password}
        )
        assert logged_in.status_code == 200
        assert logged_in.headers["cache-control"] == "no-store"
        pair = logged_in.json()
        assert pair["token_type"] == "Bearer"
        assert pair["expires_in"] == 900
        assert pair["refresh_expires_in"] == 7 * 86400
        refresh = pair["refresh_token"]

        me = client.get("/auth/me", headers=auth(pair))
        assert me.status_code == 200
        assert me.json()["username"] == "alice"

        rotated = client.post("/auth/refresh", json={"refresh_token": refresh})
        rotated_by = time.monotonic()
        assert rotated.status_code == 200
        pair2 = rotated.json()
        new_refresh = pair2["refresh_token"]
        assert new_refresh != refresh
        assert client.get("/auth/me", headers=auth(pair2)).json()["username"] == "alice"

        # A client retrying a lost response, within the grace window: the same successor.
        retried = client.post("/auth/refresh", json={"refresh_token": refresh})
        assert retried.status_code == 200
        assert retried.json()["refresh_token"] == new_refresh

        # A thief replaying the old token after the window: 401, and the session is gone.
        wait_until(rotated_by + PAST_GRACE)
        replay = client.post("/auth/refresh", json={"refresh_token": refresh})
        assert replay.status_code == 401
        assert replay.json() == {
            "error": "invalid_grant",
            "error_description": "The credentials or refresh token are invalid, expired or "
            "revoked.",
        }
        newest = client.post("/auth/refresh", json={"refresh_token": new_refresh})
        assert newest.status_code == 401
        assert newest.json()["error"] == "invalid_grant"
        assert client.get("/auth/me", headers=auth(pair2)).status_code == 401

        # Log in again and log out: 204, and the refresh token of that session is dead.
        pair3 = login(client, "alice")
        out = client.post("/auth/logout", headers=auth(pair3))
        assert out.status_code == 204
        after = client.post("/auth/refresh", json={"refresh_token": pair3["refresh_token"]})
        assert after.status_code == 401
        assert after.json()["error"] == "invalid_grant"
        assert client.get("/auth/me", headers=auth(pair3)).status_code == 401
