"""latchkey.client.LatchkeyAuth against the real service: the ASGI app in-process (injected
clock) for httpx.AsyncClient, and a ``latchkey serve`` subprocess for httpx.Client in threads."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from latchkey import Verifier
from latchkey.bootstrap import Container
from latchkey.client import LatchkeyAuth, RefreshFailed, Tokens
from latchkey.core.clock import ManualClock
from latchkey.guard import BearerAuthMiddleware

AUTH = "http://auth.test"  # the latchkey service, in-process
API = "http://api.test"  # a resource server guarded by latchkey, in-process
PASSWORD = "correct horse battery staple"
ACCESS_TTL = 900  # the default LATCHKEY_ACCESS_TTL
GRACE = 10  # the default LATCHKEY_REFRESH_GRACE
NO_AUTH = httpx.Auth()  # send a request as it is, past the client's auth


# --- in-process: the app behind an AsyncClient ---------------------------------------------


class Network(httpx.AsyncBaseTransport):
    """Routes each request by host to an in-process ASGI app, and records what was sent."""

    def __init__(self, apps: Mapping[str, ASGIApp]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.sent: list[tuple[str, str, str | None]] = []  # host, path, Authorization

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self.sent.append((url.host, url.path, request.headers.get("authorization")))
        return await self._transports[url.host].handle_async_request(request)

    def add(self, host: str, app: ASGIApp) -> None:
        self._transports[host] = httpx.ASGITransport(app=app)

    def paths(self) -> list[str]:
        return [f"{host}{path}" for host, path, _ in self.sent]

    def refreshes(self) -> int:
        return self.paths().count("auth.test/auth/refresh")


def resource_server(services: Container, clock: ManualClock, audience: str) -> Starlette:
    """An API that accepts access tokens for ``audience`` only (latchkey's own guard)."""
    verifier = Verifier(
        services.keys.jwks(), issuer=services.settings.issuer, audience=audience, clock=clock
    )
    return resource_server_with(verifier)


def resource_server_with(verifier: Verifier) -> Starlette:
    async def notes(request: Request) -> JSONResponse:
        return JSONResponse({"owner": request.state.claims["sub"]})

    return Starlette(
        routes=[Route("/notes", notes, methods=["GET", "POST"])],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)],
    )


@dataclass
class World:
    app: Starlette
    clock: ManualClock
    network: Network
    http: httpx.AsyncClient  # base URL: the auth service

    @property
    def services(self) -> Container:
        services: Container = self.app.state.container
        return services

    def rotations(self, outcome: str = "rotated") -> float:
        """The service's own count of refreshes with ``outcome`` (its Prometheus counter)."""
        value = self.app.state.metrics.registry.get_sample_value(
            "latchkey_refreshes_total", {"outcome": outcome}
        )
        return float(value or 0)

    async def login(self, **options: Any) -> LatchkeyAuth:
        """Log alice in; the auth refreshes through ``http`` and is attached to it."""
        auth = await LatchkeyAuth.alogin(
            self.http, AUTH, "alice", PASSWORD, clock=self.clock.now, **options
        )
        self.http.auth = auth
        return auth

    async def refresh_by_hand(self, refresh_token: str) -> httpx.Response:
        return await self.http.post(
            "/auth/refresh", json={"refresh_token": refresh_token}, auth=NO_AUTH
        )


@pytest.fixture
async def world(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> AsyncIterator[World]:
    app: Starlette = client.app  # type: ignore[attr-defined]
    services: Container = app.state.container
    network = Network(
        {
            "auth.test": app,
            "api.test": resource_server(services, clock, audience="another-api"),
        }
    )
    async with httpx.AsyncClient(transport=network, base_url=AUTH) as http:
        yield World(app, clock, network, http)


async def test_attaches_the_access_token(world: World) -> None:
    """Each request carries ``Authorization: Bearer <access token>``; no refresh is needed."""
    auth = await world.login()
    response = await world.http.get("/auth/me")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alice"
    assert world.network.sent[-1] == ("auth.test", "/auth/me", f"Bearer {auth.tokens.access_token}")
    assert world.network.refreshes() == 0


async def test_refreshes_shortly_before_expiry(world: World) -> None:
    """Within ``leeway`` seconds of expiry (by the injected clock) the auth refreshes first."""
    auth = await world.login(leeway=30)
    first = auth.tokens

    world.clock.advance(ACCESS_TTL - 31)  # 31 s left: still used as it is
    assert (await world.http.get("/auth/me")).status_code == 200
    assert world.network.refreshes() == 0

    world.clock.advance(2)  # 29 s left: refreshed before sending
    assert (await world.http.get("/auth/me")).status_code == 200
    assert world.network.paths()[-2:] == ["auth.test/auth/refresh", "auth.test/auth/me"]
    assert world.rotations() == 1
    assert auth.tokens.access_token != first.access_token
    assert auth.tokens.refresh_token != first.refresh_token
    assert auth.tokens.expires_at == world.clock.now() + ACCESS_TTL


async def test_refreshes_first_without_an_access_token(world: World) -> None:
    """Built from a saved refresh token alone, the auth refreshes before the first request."""
    saved = (await world.login()).tokens.refresh_token
    world.http.auth = auth = LatchkeyAuth(
        AUTH, refresh_token=saved, client=world.http, clock=world.clock.now
    )
    assert (await world.http.get("/auth/me")).status_code == 200
    assert world.network.paths() == [
        "auth.test/auth/login",
        "auth.test/auth/refresh",
        "auth.test/auth/me",
    ]
    assert auth.tokens.refresh_token != saved


async def test_fifty_concurrent_requests_share_one_refresh(world: World) -> None:
    """50 requests in flight with an expired access token: one refresh, all succeed, and the
    chain does not fork: the replaced refresh token is dead once the grace window is over."""
    auth = await world.login()
    original = auth.tokens.refresh_token
    world.clock.advance(ACCESS_TTL + 1)

    responses = await asyncio.gather(*(world.http.get("/auth/me") for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    assert world.network.refreshes() == 1
    assert world.rotations() == 1 and world.rotations("grace") == 0
    current = auth.tokens.refresh_token
    assert len({a for host, path, a in world.network.sent if path == "/auth/me"}) == 1
    # A late retry of the old token gets the very same successor (no second chain) …
    retried = await world.refresh_by_hand(original)
    assert retried.json()["refresh_token"] == current
    # … and after the grace window the old token is refused.
    world.clock.advance(GRACE + 1)
    refused = await world.refresh_by_hand(original)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_grant"


async def test_a_401_refreshes_once_and_retries(world: World) -> None:
    """An access token the server refuses (401 + Bearer challenge) is replaced and the request
    sent again: one refresh, one retry."""
    saved = (await world.login()).tokens.refresh_token
    world.http.auth = LatchkeyAuth(
        AUTH,
        refresh_token=saved,
        access_token="not-a-token",
        expires_at=world.clock.now() + 600,  # looks fresh to the client
        client=world.http,
        clock=world.clock.now,
    )
    response = await world.http.get("/auth/me")
    assert response.status_code == 200, response.text
    assert world.network.paths()[1:] == [
        "auth.test/auth/me",
        "auth.test/auth/refresh",
        "auth.test/auth/me",
    ]


async def test_a_second_401_is_returned(world: World) -> None:
    """An API that refuses even the fresh token: its 401 comes back after one refresh and one
    retry; the auth does not loop."""
    await world.login()
    response = await world.http.get(f"{API}/notes")  # it wants another audience
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert world.network.paths()[1:] == [
        "api.test/notes",
        "auth.test/auth/refresh",
        "api.test/notes",
    ]


async def test_a_streamed_body_is_not_sent_twice(world: World) -> None:
    """A body that was streamed cannot be replayed: the tokens are refreshed, the 401 is
    returned, and sending again would use the new token."""
    await world.login()

    async def body() -> AsyncIterator[bytes]:
        yield b"streamed"

    response = await world.http.post(f"{API}/notes", content=body())
    assert response.status_code == 401
    assert world.network.paths()[1:] == ["api.test/notes", "auth.test/auth/refresh"]


async def test_a_401_without_a_bearer_challenge_is_left_alone(world: World) -> None:
    """A 401 that is not about the access token (a failed login) causes no refresh."""
    await world.login()
    response = await world.http.post(
        "/auth/login", json={"username": "alice", "password": "wrong password"}
    )
    assert response.status_code == 401
    assert "www-authenticate" not in response.headers
    assert world.network.refreshes() == 0


async def test_a_401_for_a_more_recent_sign_in_is_returned_as_it_is(world: World) -> None:
    """401 insufficient_user_authentication (RFC 9470): a refresh would keep auth_time, so
    none is made; the answer comes back, and the password proved again lets the call pass."""
    await world.login()
    world.clock.advance(world.services.settings.fresh_auth_max_age + 1)
    response = await world.http.post("/auth/logout-all")
    assert response.status_code == 401
    assert 'error="insufficient_user_authentication"' in response.headers["www-authenticate"]
    assert world.network.refreshes() == 0
    again = await world.http.post("/auth/reauthenticate", json={"password": PASSWORD})
    assert again.status_code == 200, again.text
    fresh = again.json()["access_token"]
    done = await world.http.post(
        "/auth/logout-all", headers={"Authorization": f"Bearer {fresh}"}, auth=NO_AUTH
    )
    assert done.status_code == 204, done.text


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_refresh_gets_every_new_token(world: World, kind: str) -> None:
    """``on_refresh`` (a plain or an async function) gets the login's tokens and each rotated
    pair, in order; the last one it got is the one that works."""
    received: list[Tokens] = []

    def remember(tokens: Tokens) -> None:
        received.append(tokens)

    async def remember_async(tokens: Tokens) -> None:
        await asyncio.sleep(0)
        received.append(tokens)

    auth = await world.login(on_refresh=remember if kind == "sync" else remember_async)
    for _ in range(2):
        world.clock.advance(ACCESS_TTL + 1)
        assert (await world.http.get("/auth/me")).status_code == 200

    assert len(received) == 3
    assert len({tokens.refresh_token for tokens in received}) == 3
    assert received[-1] == auth.tokens
    assert received[-1].expires_at == world.clock.now() + ACCESS_TTL
    assert (await world.refresh_by_hand(received[-1].refresh_token)).status_code == 200


async def test_a_revoked_session_raises_refresh_failed(world: World) -> None:
    """After logout the refresh is refused: RefreshFailed('invalid_grant'), raised again for
    later requests without asking the service."""
    auth = await world.login()
    assert (await world.http.post("/auth/logout")).status_code == 204
    world.clock.advance(ACCESS_TTL + 1)

    with pytest.raises(RefreshFailed) as failed:
        await world.http.get("/auth/me")
    assert failed.value.error == "invalid_grant"
    assert failed.value.status_code == 401 and failed.value.permanent
    with pytest.raises(RefreshFailed, match="invalid_grant"):
        await world.http.get("/auth/me")
    assert world.network.refreshes() == 1
    assert auth.tokens.refresh_token not in repr(failed.value) + str(failed.value)


async def test_a_disabled_account_raises_refresh_failed(world: World) -> None:
    """A disabled account: RefreshFailed('account_disabled') with status 403."""
    await world.login()
    await world.services.accounts.set_disabled("alice", disabled=True)
    world.clock.advance(ACCESS_TTL + 1)

    with pytest.raises(RefreshFailed) as failed:
        await world.http.get("/auth/me")
    assert (failed.value.error, failed.value.status_code) == ("account_disabled", 403)


async def test_a_503_from_a_guarded_api_keeps_the_session(world: World) -> None:
    """An API whose guard cannot get its keys (the key server refuses connections) answers
    503 with Retry-After: the auth returns that answer as it is, refreshes nothing, keeps
    the tokens, and the next request goes out with the same access token."""
    down = Verifier.from_jwks_url(
        "http://127.0.0.1:9/.well-known/jwks.json",  # nothing listens on the discard port
        issuer=world.services.settings.issuer,
        audience="latchkey",
        clock=world.clock,
        refresh_deadline=5.0,  # a refused connection answers long before
    )
    world.network.add("down.test", resource_server_with(down))
    auth = await world.login()
    tokens = auth.tokens
    for _ in range(2):
        response = await world.http.get("http://down.test/notes")
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert world.network.sent[-1][2] == f"Bearer {tokens.access_token}"
    assert auth.tokens is tokens
    assert world.network.refreshes() == 0
    assert (await world.http.get("/auth/me")).status_code == 200
    await down.aclose()


async def test_a_503_refresh_keeps_the_tokens(world: World) -> None:
    """A refresh answered 503 (the service is down for now) raises RefreshFailed with
    retry_after, not permanent; the tokens are kept and the next request refreshes again."""
    auth = await world.login()
    tokens = auth.tokens
    app = world.app

    async def unavailable(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/auth/refresh":
            await JSONResponse(
                {"error": "temporarily_unavailable", "error_description": "Try again shortly."},
                503,
                headers={"Retry-After": "7"},
            )(scope, receive, send)
        else:
            await app(scope, receive, send)

    world.network.add("auth.test", unavailable)
    world.clock.advance(ACCESS_TTL + 1)
    with pytest.raises(RefreshFailed) as failed:
        await world.http.get("/auth/me")
    assert (failed.value.error, failed.value.status_code) == ("temporarily_unavailable", 503)
    assert failed.value.retry_after == 7 and not failed.value.permanent
    assert auth.tokens is tokens
    world.network.add("auth.test", app)
    assert (await world.http.get("/auth/me")).status_code == 200
    assert world.network.refreshes() == 2
    assert auth.tokens.refresh_token != tokens.refresh_token


async def test_repr_hides_the_tokens(world: World) -> None:
    """Neither the auth nor its tokens show a secret in ``repr``."""
    auth = await world.login()
    tokens = auth.tokens
    assert tokens.access_token and tokens.refresh_token
    for text in (repr(auth), repr(tokens), str(tokens)):
        assert tokens.access_token not in text
        assert tokens.refresh_token not in text
    assert "'**********'" in repr(tokens)


def test_an_async_callback_is_refused_by_a_sync_client() -> None:
    """A sync client cannot await ``on_refresh``: TypeError before any refresh is sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async def persist(tokens: Tokens) -> None: ...

    auth = LatchkeyAuth(AUTH, refresh_token="lkrt.x", on_refresh=persist)
    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http,
        pytest.raises(TypeError),
    ):
        http.get(f"{API}/notes")
    assert sent == []


# --- a real server: httpx.Client in threads ------------------------------------------------


@dataclass
class Served:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    workdir: Path

    def cli(self, *args: str, stdin: str | None = None) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "latchkey", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def add_user(self, username: str) -> None:
        self.cli("user", "add", username, "--password-stdin", stdin=PASSWORD + "\n")

    def rotations(self) -> float:
        management = f"http://{self.env['LATCHKEY_MANAGEMENT_ADDR']}"
        text = httpx.get(f"{management}/metrics", trust_env=False).text
        match = re.search(r'^latchkey_refreshes_total\{outcome="rotated"\} (\S+)$', text, re.M)
        assert match, text
        return float(match[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``latchkey serve`` on a free port with its own SQLite data directory."""
    workdir = tmp_path_factory.mktemp("client-server")
    port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LATCHKEY_") and not name.lower().endswith("_proxy")
    }
    env.update(
        LATCHKEY_DATA_DIR=str(workdir / "data"),
        LATCHKEY_ISSUER=f"http://127.0.0.1:{port}",
        LATCHKEY_MANAGEMENT_ADDR=f"127.0.0.1:{_free_port()}",
        LATCHKEY_ARGON2_TIME_COST="1",
        LATCHKEY_ARGON2_MEMORY_KIB="8",
        LATCHKEY_ARGON2_PARALLELISM="1",
    )
    served = Served(f"http://127.0.0.1:{port}", workdir / "data", env, workdir)
    served.cli("migrate")
    command = [sys.executable, "-m", "latchkey", "serve", "--host", "127.0.0.1"]
    with (workdir / "server.log").open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "server.log").read_text()
            try:
                if httpx.get(f"{served.base_url}/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (workdir / "server.log").read_text()
            time.sleep(0.05)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Counting(httpx.HTTPTransport):
    """An HTTP transport that counts the refresh requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/refresh":
            with self._lock:
                self.refreshes += 1
        return super().handle_request(request)


class Skewed:
    """The wall clock, moved ahead by ``offset`` seconds: the client's view of time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def sync_client(served: Served) -> Iterator[tuple[httpx.Client, Counting]]:
    transport = Counting()
    with httpx.Client(
        base_url=served.base_url, transport=transport, trust_env=False, timeout=30
    ) as http:
        yield http, transport


@pytest.mark.e2e
def test_threads_share_one_refresh(
    served: Served, sync_client: tuple[httpx.Client, Counting]
) -> None:
    """50 threads on one httpx.Client with an expired access token: one refresh for all,
    each rotated token handed to a plain ``on_refresh``."""
    served.add_user("threads")
    http, transport = sync_client
    received: list[Tokens] = []
    clock = Skewed()
    http.auth = auth = LatchkeyAuth.login(
        http, served.base_url, "threads", PASSWORD, on_refresh=received.append, clock=clock
    )
    before = served.rotations()
    clock.offset = ACCESS_TTL + 1  # expired, as far as the client knows
    start = threading.Barrier(50)

    def call(_: int) -> int:
        start.wait()
        return http.get("/auth/me").status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(call, range(50)))

    assert codes == [200] * 50
    assert transport.refreshes == 1
    assert served.rotations() - before == 1
    assert len(received) == 2 and received[-1] == auth.tokens


@pytest.mark.e2e
def test_sync_refresh_failures(served: Served, sync_client: tuple[httpx.Client, Counting]) -> None:
    """With httpx.Client too: a logged-out session gives RefreshFailed('invalid_grant'), a
    disabled account RefreshFailed('account_disabled')."""
    http, transport = sync_client
    served.add_user("leaver")
    served.add_user("disabled")
    clock = Skewed()

    http.auth = LatchkeyAuth.login(http, served.base_url, "leaver", PASSWORD, clock=clock)
    assert http.post("/auth/logout").status_code == 204
    clock.offset = ACCESS_TTL + 1
    with pytest.raises(RefreshFailed) as failed:
        http.get("/auth/me")
    assert (failed.value.error, failed.value.status_code) == ("invalid_grant", 401)

    clock.offset = 0
    http.auth = LatchkeyAuth.login(http, served.base_url, "disabled", PASSWORD, clock=clock)
    served.cli("user", "disable", "disabled")
    clock.offset = ACCESS_TTL + 1
    with pytest.raises(RefreshFailed) as failed:
        http.get("/auth/me")
    assert (failed.value.error, failed.value.status_code) == ("account_disabled", 403)
    assert transport.refreshes == 2


@pytest.mark.e2e
def test_a_401_refresh_fits_in_one_connection(served: Served) -> None:
    """The refused response is read before refreshing, so a client limited to one connection
    can send the refresh itself (no wait for a connection that the 401 still holds)."""
    served.add_user("narrow")
    limits = httpx.Limits(max_connections=1)
    with httpx.Client(base_url=served.base_url, trust_env=False, timeout=5, limits=limits) as http:
        saved = LatchkeyAuth.login(http, served.base_url, "narrow", PASSWORD).tokens
        http.auth = LatchkeyAuth(
            served.base_url,
            refresh_token=saved.refresh_token,
            access_token="not-a-token",
            expires_at=time.time() + 600,
            client=http,
        )
        assert http.get("/auth/me").status_code == 200
