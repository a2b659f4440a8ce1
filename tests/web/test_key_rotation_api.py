"""Rotation under load, through the ASGI app (docs/keys.md).

Sessions keep refreshing and every access token still within its lifetime is verified, at
every clock step across pre-publication, activation, retirement and drop, by the service
itself (``GET /auth/me``) and by resource servers that verify offline from a JWKS they cache
for exactly the ``max-age`` the service sends — never refetching early, not even for an
unknown ``kid``. Because a new key is published LATCHKEY_KEY_PREPUBLISH (600 s) before it
signs, longer than that max-age (300 s), not one verification may fail.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from latchkey.bootstrap import Container
from latchkey.core.b64 import b64url_decode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import ForbiddenHeader
from latchkey.core.verifier import AccessClaims, Verifier
from latchkey.settings import Settings
from latchkey.web import create_app
from support import make_settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

STEP = 30.0  # seconds the clock moves between rounds
SESSIONS = 3
RESOURCE_SERVERS = 10  # server i first fetches in round i: every phase of the 300 s max-age
ROTATE_AT = 5  # round in which `keys rotate` runs, concurrently with the round's requests
ROUNDS = 72  # past the old key's drop: 150 s + 600 s + 900 s = round 55


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return claims


def kid_of(token: str) -> str:
    kid: str = json.loads(b64url_decode(token.split(".")[0]))["kid"]
    return kid


class CachingResourceServer:
    """An API that verifies tokens offline with the JWKS, kept for its Cache-Control max-age
    and refetched only when that has passed."""

    def __init__(self, client: httpx.AsyncClient, clock: ManualClock, settings: Settings) -> None:
        self._client = client
        self._clock = clock
        self._settings = settings
        self._verifier: Verifier | None = None
        self._fresh_until = 0.0
        self.max_age = 0

    async def verify(self, token: str) -> AccessClaims:
        now = self._clock.now()
        if self._verifier is None or now >= self._fresh_until:
            response = await self._client.get("/.well-known/jwks.json")
            assert response.status_code == 200
            match = re.search(r"max-age=(\d+)", response.headers["cache-control"])
            assert match is not None
            self.max_age = int(match[1])
            self._fresh_until = now + self.max_age
            self._verifier = Verifier(
                response.json(),
                issuer=self._settings.issuer,
                audience=self._settings.audience,
                max_lifetime=self._settings.access_ttl,
                clock=self._clock,
            )
        return self._verifier.verify(token)


async def test_rotation_under_load_fails_no_token(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """Refresh and verify at every 30 s step while a key is rotated: no failure anywhere; the
    new key signs from its activation, the old key leaves the JWKS once its tokens expired."""
    services: Container = client.app.state.container  # type: ignore[attr-defined]
    servers = [CachingResourceServer(client, clock, settings) for _ in range(RESOURCE_SERVERS)]

    async def login() -> str:
        response = await client.post("/auth/login", json=alice)
        assert response.status_code == 200, response.text
        return str(response.json()["refresh_token"])

    async def refresh(session: int) -> str:
        response = await client.post(
            "/auth/refresh", json={"refresh_token": refresh_tokens[session]}
        )
        assert response.status_code == 200, response.text
        refresh_tokens[session] = response.json()["refresh_token"]
        return str(response.json()["access_token"])

    async def me(token: str) -> None:
        response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, f"{kid_of(token)} at {clock.now()}: {response.text}"

    refresh_tokens = [await login() for _ in range(SESSIONS)]
    first_kid = services.keys.ring.signing.kid
    new_kid = ""
    issued: list[str] = []
    for round_ in range(ROUNDS):
        work: list[Any] = [refresh(session) for session in range(SESSIONS)]
        live = [token for token in issued if claims_of(token)["exp"] > clock.now()]
        work += [me(token) for token in live[:2]]  # the oldest still-valid tokens
        if round_ == ROTATE_AT:
            work.append(services.keys.rotate())
        results = await asyncio.gather(*work)
        fresh = results[:SESSIONS]
        if round_ == ROTATE_AT:
            new_kid = results[-1]
            assert [key["kid"] for key in services.keys.jwks()["keys"]] == [first_kid, new_kid]
        issued += fresh

        activation = ROTATE_AT * STEP + settings.key_prepublish
        signing_new = round_ * STEP >= activation
        assert {kid_of(token) for token in fresh} == {new_kid if signing_new else first_kid}
        for token in [*live, *fresh]:
            assert services.tokens.verify_access_token(token)["sub"]
            for server in servers[: round_ + 1]:
                assert (await server.verify(token))["sub"]
        await asyncio.gather(*(me(token) for token in fresh))

        if round_ % 3 == 0:
            await services.keys.load()  # the periodic reload, between requests
        clock.advance(STEP)

    assert all(0 < server.max_age < settings.key_prepublish for server in servers)
    # The old key left the JWKS after the last token it signed expired.
    assert [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]] == [
        new_kid
    ]
    assert {kid_of(token) for token in issued} == {first_kid, new_kid}


async def test_immediate_rotation_fails_caches_until_they_refetch(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """The other side, why pre-publication matters: after ``--immediately``, a resource server
    whose cached JWKS predates the key refuses its tokens until its max-age has passed."""
    services: Container = client.app.state.container  # type: ignore[attr-defined]
    server = CachingResourceServer(client, clock, settings)
    pair = (await client.post("/auth/login", json=alice)).json()
    assert (await server.verify(pair["access_token"]))["sub"]
    clock.advance(1)
    new_kid = await services.keys.rotate(immediately=True)
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    token = response.json()["access_token"]
    assert kid_of(token) == new_kid
    assert services.tokens.verify_access_token(token)["sub"]  # the service itself knows the key
    with pytest.raises(ForbiddenHeader):
        await server.verify(token)
    clock.advance(server.max_age)
    assert (await server.verify(token))["sub"]


async def test_running_instances_rotate_on_schedule_once(
    settings: Settings, clock: ManualClock
) -> None:
    """LATCHKEY_KEY_ROTATION_INTERVAL: when the newest key reaches that age, the background
    task of two running apps on one database adds exactly one key, which both publish."""
    day = 86_400
    scheduled = make_settings(
        settings.data_dir,
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        key_rotation_interval=day,
        key_refresh_interval=1,
    )
    apps = [create_app(scheduled, clock=clock) for _ in range(2)]
    async with AsyncExitStack() as stack:
        clients = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://testserver")
                )
            )

        async def published() -> list[list[str]]:
            documents = [(await c.get("/.well-known/jwks.json")).json() for c in clients]
            return [[key["kid"] for key in document["keys"]] for document in documents]

        (first,), _ = await published()
        clock.advance(day)
        deadline = time.monotonic() + 10
        while any(len(kids) < 2 for kids in await published()):
            assert time.monotonic() < deadline, "no instance rotated within 10 s"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # more rounds of the task add nothing
        a, b = await published()
        assert a == b and len(a) == 2 and a[0] == first
        services: Container = apps[0].state.container
        assert len(await services.store.list_signing_keys()) == 2
