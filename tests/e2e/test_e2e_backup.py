"""From SQLite to PostgreSQL with ``latchkey backup`` and ``latchkey restore``: a session
logged in on SQLite, backed up while the service runs, restored into a new PostgreSQL
database, keeps refreshing there, and its access token keeps verifying."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from latchkey import Verifier
from support import POSTGRES_URL, run_sync

pytestmark = pytest.mark.e2e


@pytest.fixture
def new_postgres_database() -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL, dropped afterwards."""
    name = f"latchkey_restore_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def execute(statement: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    run_sync(lambda: execute(f'CREATE DATABASE "{name}"'))
    yield admin.rsplit("/", 1)[0] + "/" + name
    run_sync(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_session_survives_the_move_from_sqlite_to_postgresql(
    processes: Any, login: Any, new_postgres_database: str
) -> None:
    data_dir = processes.workdir / "data"
    processes.migrate(data_dir)
    processes.add_user(data_dir, "amy", "read write")
    sqlite_server = processes.start_latchkey(data_dir)
    issuer = sqlite_server.env["LATCHKEY_ISSUER"]
    with sqlite_server.client() as client:
        pair = login(client, "amy")
        # The backup is taken while the service runs (and while the session is used).
        backup = processes.workdir / "move.lkb"
        made = processes.cli(data_dir, "backup", str(backup))
        assert made.returncode == 0, made.stderr
        assert client.get("/auth/me", headers=bearer(pair)).status_code == 200
    assert backup.stat().st_mode & 0o777 == 0o600
    sqlite_server.stop()

    secret = (data_dir / "secret.key").read_text().strip()
    postgres = {"LATCHKEY_DATABASE_URL": new_postgres_database, "LATCHKEY_SECRET_KEY": secret}
    elsewhere = processes.workdir / "unused"  # PostgreSQL keeps nothing in the data directory
    restored = processes.cli(elsewhere, "restore", str(backup), **postgres)
    assert restored.returncode == 0, restored.stderr
    assert "users 1" in restored.stdout and "sessions 1" in restored.stdout
    assert restored.stderr.startswith("latchkey: database postgresql://")

    server = processes.start_latchkey(
        elsewhere, issuer_port=int(issuer.rsplit(":", 1)[1]), **postgres
    )
    with server.client() as client:
        # The access token issued on SQLite verifies against PostgreSQL's key set ...
        jwks = client.get("/.well-known/jwks.json").json()
        claims = Verifier(jwks, issuer=issuer, audience="latchkey").verify(pair["access_token"])
        assert claims["scope"] == "read write"
        me = client.get("/auth/me", headers=bearer(pair))
        assert me.status_code == 200 and me.json()["username"] == "amy"
        # ... and the session refreshes, then goes on.
        refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        again = client.post(
            "/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
        )
        assert again.status_code == 200, again.text
        assert client.get("/auth/me", headers=bearer(again.json())).status_code == 200


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}
