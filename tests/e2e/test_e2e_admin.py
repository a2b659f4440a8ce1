"""Revocations made by the admin CLI reach a running ``latchkey serve`` without Redis.

The session's shared server (SQLite, no LATCHKEY_REDIS_URL), with users of this module's
own; the CLI runs as the real ``latchkey`` script with the server's LATCHKEY_* environment.
Routes that read the database (``/auth/me``, ``/auth/sessions``) refuse a revoked session at
once anyway; what the feed (LATCHKEY_REVOCATION_POLL_INTERVAL, 1 s) changes is the server's
guard, the deny-list its Verifier consults without a query. That is probed with
``POST /auth/logout`` and a bearer token: that route only verifies the token.

A logout that gets through (204) puts its session on the deny-list itself, so a token that
was accepted once proves nothing afterwards: each probe uses the access token of a session
not probed before, all of them revoked by the same command.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

DEADLINE = 3.0  # seconds from the CLI's return to the guard's 401 (poll interval: 1 s)
PROBE_EVERY = 0.1
SESSIONS = int(DEADLINE / PROBE_EVERY) + 10  # more fresh tokens than probes fit in DEADLINE
CLI_TIMEOUT = 60.0


@dataclass
class Admin:
    server: Any  # conftest.Server
    workdir: Path
    password: str

    def latchkey(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed ``latchkey`` script, with exactly the server's environment."""
        script = Path(sys.executable).with_name("latchkey")
        return subprocess.run(
            [str(script), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.server.env,
            timeout=CLI_TIMEOUT,
            check=False,
        )


@pytest.fixture(scope="module")
def admin(shared_latchkey: Any) -> Admin:
    """The shared server (no server start of our own), with users alice, bob and carol."""
    server = shared_latchkey.server
    assert "LATCHKEY_REDIS_URL" not in server.env
    processes = shared_latchkey.processes
    for username in ("alice", "bob", "carol"):
        processes.add_user(shared_latchkey.data_dir, username)
    return Admin(server, processes.workdir, processes.password)


def _logins(client: httpx.Client, admin: Admin, username: str, count: int) -> list[dict[str, Any]]:
    pairs = []
    for _ in range(count):
        response = client.post(
            "/auth/login", json={"username": username, "password": admin.password}
        )
        assert response.status_code == 200, response.text
        pairs.append(response.json())
    return pairs


def _bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def _guard_rejects(client: httpx.Client, pairs: list[dict[str, Any]], since: float) -> float:
    """Probe the guard with one fresh token every PROBE_EVERY s until it answers 401; the
    seconds from ``since``. Fails after DEADLINE."""
    for pair in pairs:
        response = client.post("/auth/logout", headers=_bearer(pair))
        answered = time.monotonic()
        if response.status_code == 401:
            assert response.json()["error"] == "invalid_token"
            assert response.headers["www-authenticate"].startswith("Bearer")
            return answered - since
        assert response.status_code == 204, response.text
        if answered - since > DEADLINE:
            break
        time.sleep(PROBE_EVERY)
    pytest.fail(f"the guard still accepted a revoked session's token {DEADLINE} s later")


def test_cli_revoke_user_reaches_the_running_guard(admin: Admin) -> None:
    """`latchkey sessions revoke --user alice` in another process: within DEADLINE the
    server's guard rejects alice's access tokens (401), her refresh tokens are refused,
    and bob's session is untouched."""
    with admin.server.client() as client:
        alice = _logins(client, admin, "alice", SESSIONS)
        (bob,) = _logins(client, admin, "bob", 1)

        result = admin.latchkey("sessions", "revoke", "--user", "alice")
        returned = time.monotonic()
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{SESSIONS} sessions revoked of alice\n"

        delay = _guard_rejects(client, alice, returned)
        print(f"\nsessions revoke --user → guard 401 after {delay:.2f} s")
        # Every one of them is on the deny-list now, not only the one probed last.
        for pair in alice[-3:]:
            assert client.post("/auth/logout", headers=_bearer(pair)).status_code == 401
        refused = client.post("/auth/refresh", json={"refresh_token": alice[-1]["refresh_token"]})
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_grant"
        assert client.get("/auth/me", headers=_bearer(bob)).status_code == 200
        assert client.post("/auth/refresh", json={"refresh_token": bob["refresh_token"]}).is_success


def test_cli_disable_user_reaches_the_running_guard(admin: Admin) -> None:
    """`latchkey user disable carol`: within DEADLINE the guard rejects her access tokens;
    a refresh answers 403 account_disabled (the client stops instead of looping), so does a
    login with the right password; `user enable` lets her log in again."""
    with admin.server.client() as client:
        carol = _logins(client, admin, "carol", SESSIONS)

        result = admin.latchkey("user", "disable", "carol")
        returned = time.monotonic()
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"disabled user carol; {SESSIONS} sessions revoked\n"

        delay = _guard_rejects(client, carol, returned)
        print(f"\nuser disable → guard 401 after {delay:.2f} s")
        refused = client.post("/auth/refresh", json={"refresh_token": carol[-1]["refresh_token"]})
        assert refused.status_code == 403
        assert refused.json()["error"] == "account_disabled"
        login = client.post("/auth/login", json={"username": "carol", "password": admin.password})
        assert login.status_code == 403
        assert login.json()["error"] == "account_disabled"
        assert client.get("/auth/me", headers=_bearer(carol[-1])).status_code == 401

        enabled = admin.latchkey("user", "enable", "carol")
        assert enabled.returncode == 0, enabled.stderr
        assert len(_logins(client, admin, "carol", 1)) == 1
        still = client.post("/auth/refresh", json={"refresh_token": carol[-1]["refresh_token"]})
        assert still.status_code == 401  # enabling brings no session back
