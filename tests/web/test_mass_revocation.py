"""Ending every session of a user costs the same at 100,000 sessions as at one: one row update
(the user's epoch), one deny-list entry, one audit event with the count (core/epochs.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from latchkey.bootstrap import Container
from latchkey.core.audit import AuditKind
from latchkey.core.clock import ManualClock
from latchkey.core.sessions import SessionPolicy, new_session
from latchkey.store.sql import SqlStore
from latchkey.store.tables import sessions, users
from support import services_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from seeding import seed_sessions

pytestmark = pytest.mark.anyio

SEEDED = 100_000
WITH_TOKENS = 5  # of the seeded sessions, these have refresh and access tokens in hand
NEW_PASSWORD = "a brand new passphrase for her"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    services = services_of(client)
    user = await services.accounts.add_user("alice", "correct horse battery staple", "read")
    return {"username": "alice", "password": "correct horse battery staple", "id": user.id}


async def login(client: httpx.AsyncClient, user: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def seed(services: Container, user_id: str, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` sessions of the user in the database, all but :data:`WITH_TOKENS` by one
    bulk INSERT; those few get a refresh token and an access token, as a client holds."""
    store = SqlStore.from_url(services.settings.database_url, timeout=120)
    try:
        async with store.engine.begin() as conn:
            now = services.clock.now()
            await seed_sessions(conn, user_id, count - WITH_TOKENS, now=now - 60, tag=tag)
    finally:
        await store.close()
    codec = services.tokens._codec  # what a real login hands out, minus the password check
    access = services.tokens._access
    held = []
    for _ in range(WITH_TOKENS):
        token = codec.first(codec.new_sid())
        session = new_session(
            token, user_id=user_id, scope="read", now=services.clock.now(), policy=SessionPolicy()
        )
        await services.store.add_session(session)
        pair = access.pair(session, token, services.clock.now())
        held.append({"access_token": pair.access_token, "refresh_token": pair.refresh_token})
    return held


async def live_count(services: Container, user_id: str) -> int:
    """How many of the user's sessions a refresh would still rotate (its epoch's)."""
    c = sessions.c
    statement = (
        select(func.count())
        .select_from(sessions.join(users, users.c.id == c.user_id))
        .where(c.user_id == user_id, c.epoch == users.c.epoch, c.revoked_at.is_(None))
    )
    async with services.store.engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def assert_ended(client: httpx.AsyncClient, pair: dict[str, Any]) -> None:
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401, me.text
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"


async def test_password_change_ends_a_hundred_thousand_sessions(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: ManualClock
) -> None:
    """POST /auth/password answers 204 for a user with 100,000 seeded sessions and three
    real ones; at once every other session fails to refresh and its access token is
    refused, the caller's goes on; the deny-list holds one entry; one audit event counts."""
    services = services_of(client)
    mine, *others = [await login(client, alice) for _ in range(3)]
    held = await seed(services, alice["id"], SEEDED, "a")
    assert await live_count(services, alice["id"]) == SEEDED + 3
    clock.advance(1)  # those tokens were issued before the change (iat is whole seconds)

    response = await client.post(
        "/auth/password",
        json={"current_password": alice["password"], "new_password": NEW_PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    assert response.status_code == 204, response.text

    for pair in others + held:
        await assert_ended(client, pair)
    assert await live_count(services, alice["id"]) == 1  # the caller's own
    me = await client.get("/auth/me", headers=bearer(mine["access_token"]))
    assert me.status_code == 200, me.text
    refreshed = await client.post("/auth/refresh", json={"refresh_token": mine["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert len(services.revocations.local) == 1  # one per-user cutoff, whatever the count
    events = await services.store.list_audit(user_id=alice["id"], kind=AuditKind.SESSIONS_REVOKED)
    assert [(e.reason, e.count) for e in events] == [("password_changed", SEEDED + 2)]
    assert (
        await services.store.list_audit(user_id=alice["id"], kind=AuditKind.SESSION_REVOKED) == []
    )

    # A login after the change is a session of the new epoch and works.
    again = await login(client, {"username": "alice", "password": NEW_PASSWORD})
    assert (await client.get("/auth/me", headers=bearer(again["access_token"]))).status_code == 200


async def test_logout_all_and_the_administrator_end_every_session(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: ManualClock
) -> None:
    """POST /auth/logout-all ends the caller's sessions too; `sessions revoke --user` (the
    service beneath it) and disabling then find nothing left to end, and say so."""
    services = services_of(client)
    pairs = [await login(client, alice) for _ in range(2)]
    held = await seed(services, alice["id"], 2_000, "b")
    clock.advance(1)
    response = await client.post("/auth/logout-all", headers=bearer(pairs[0]["access_token"]))
    assert response.status_code == 204, response.text
    for pair in pairs + held:
        await assert_ended(client, pair)
    assert await live_count(services, alice["id"]) == 0
    assert await services.sessions.revoke_sessions_of("alice") == 0
    assert await services.accounts.set_disabled("alice", disabled=True) == 0
    events = await services.store.list_audit(user_id=alice["id"], kind=AuditKind.SESSIONS_REVOKED)
    assert [(e.reason, e.count) for e in reversed(events)] == [
        ("logout_all", 2_002),
        ("admin", 0),
        ("user_disabled", 0),
    ]
    assert len(services.revocations.local) == 1
