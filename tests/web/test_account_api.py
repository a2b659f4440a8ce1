"""Account routes of docs/design.md §4 over HTTP: sessions, logout-all, password change,
registration, disabled accounts, and the login throttle (no enumeration, no permanent
lockout)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from latchkey.core.clock import ManualClock
from latchkey.settings import Settings
from latchkey.web import create_app
from support import make_settings, services_of

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

MISSING_CHALLENGE = 'Bearer realm="latchkey"'
INVALID_CHALLENGE = 'Bearer realm="latchkey", error="invalid_token"'
JSON_HEADERS = {"Content-Type": "application/json"}
SESSION_FIELDS = {
    "id",
    "created_at",
    "last_used_at",
    "expires_at",
    "user_agent",
    "address",
    "current",
}
ADDRESS = "127.0.0.1"  # what httpx.ASGITransport reports as the client
ALICE_NEW = "a brand new passphrase for her"
BOB = {"username": "bob", "password": "violet lantern under the bridge"}
STRONG = "plum orbit kettle saxophone"  # passes the password policy
VOLATILE_HEADERS = {"x-request-id", "date"}


def _check_every_response(client: httpx.AsyncClient) -> None:
    """Every response is checked: never a 5xx, never a traceback; errors are OAuth-style."""

    async def check(response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        try:
            sent = request.content[:200]
        except httpx.RequestNotRead:
            sent = b"<streamed>"
        where = f"{request.method} {request.url.path} {sent!r} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text[:300]}"
        assert "Traceback" not in response.text, where
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error", "error_description"}, where
            assert isinstance(body["error"], str), where
            assert isinstance(body["error_description"], str), where

    client.event_hooks = {"request": [], "response": [check]}


@pytest.fixture
def client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """conftest's client (registration off), with every response checked."""
    _check_every_response(client)
    return client


@pytest.fixture
async def open_client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with LATCHKEY_ALLOW_REGISTRATION on (same database as ``settings``)."""
    open_settings = make_settings(
        settings.data_dir,
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        allow_registration=True,
    )
    app = create_app(open_settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.app = app  # type: ignore[attr-defined]
            _check_every_response(c)
            yield c


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, str]:
    await services_of(client).accounts.add_user(BOB["username"], BOB["password"], scope="read")
    return dict(BOB)


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An OAuth-style JSON error body with this status and code, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    return body  # type: ignore[no-any-return]


def assert_retry_after(response: httpx.Response) -> int:
    """A 429 too_many_requests with a positive whole-second Retry-After."""
    assert_error(response, 429, "too_many_requests")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    return int(retry_after)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(
    client: httpx.AsyncClient, user: dict[str, str], agent: str | None = None
) -> dict[str, Any]:
    headers = {"User-Agent": agent} if agent else {}
    response = await client.post("/auth/login", json=user, headers=headers)
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    pair["sid"] = me.json()["sid"]
    pair["sub"] = me.json()["sub"]
    return pair


async def sessions(client: httpx.AsyncClient, pair: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get("/auth/sessions", headers=bearer(pair["access_token"]))
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["sessions"]
    return listed


async def assert_alive(client: httpx.AsyncClient, pair: dict[str, Any]) -> None:
    """The session's access token passes and its refresh token rotates (updates ``pair``)."""
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["sid"] == pair["sid"]
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    pair["access_token"] = refreshed.json()["access_token"]
    pair["refresh_token"] = refreshed.json()["refresh_token"]


async def assert_dead(client: httpx.AsyncClient, pair: dict[str, Any]) -> None:
    """The session's access token is refused at once (the guard's deny-list, no waiting, and
    the routes that look the session up) and its refresh token no longer rotates."""
    token = bearer(pair["access_token"])
    for response in (
        await client.get("/auth/me", headers=token),
        await client.get("/auth/sessions", headers=token),
        # Logout by bearer checks only the signed token against the deny-list.
        await client.post("/auth/logout", headers=token),
    ):
        assert_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(refreshed, 401, "invalid_grant")


def stable_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted(
        (name.lower(), value)
        for name, value in response.headers.multi_items()
        if name.lower() not in VOLATILE_HEADERS
    )


# --- GET /auth/sessions ----------------------------------------------------------------------


async def test_sessions_lists_own_sessions(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], settings: Settings
) -> None:
    """Two logins with different user agents are both listed, only the caller's is current,
    and another user's sessions never appear."""
    firefox = await login(client, alice, agent="Mozilla/5.0 Firefox/128.0")
    curl = await login(client, alice, agent="curl/8.5.0")
    bobs = await login(client, bob, agent="bob-agent/1")

    response = await client.get("/auth/sessions", headers=bearer(firefox["access_token"]))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"sessions"}
    listed = {entry["id"]: entry for entry in body["sessions"]}
    assert set(listed) == {firefox["sid"], curl["sid"]}
    for entry in listed.values():
        assert set(entry) == SESSION_FIELDS
        assert entry["address"] == ADDRESS
        for field in ("created_at", "last_used_at", "expires_at"):
            assert type(entry[field]) is int
        assert entry["created_at"] <= entry["last_used_at"] < entry["expires_at"]
        assert entry["expires_at"] - entry["last_used_at"] <= settings.refresh_ttl
    assert listed[firefox["sid"]]["user_agent"] == "Mozilla/5.0 Firefox/128.0"
    assert listed[curl["sid"]]["user_agent"] == "curl/8.5.0"
    assert listed[firefox["sid"]]["current"] is True
    assert listed[curl["sid"]]["current"] is False

    # The same list seen from the other session: now that one is current.
    seen_by_curl = {entry["id"]: entry["current"] for entry in await sessions(client, curl)}
    assert seen_by_curl == {firefox["sid"]: False, curl["sid"]: True}
    # Bob sees only his own.
    assert [(e["id"], e["current"]) for e in await sessions(client, bobs)] == [(bobs["sid"], True)]


async def test_sessions_reveal_no_secret(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """The list carries no token, hash or nonce of any session."""
    first = await login(client, alice)
    second = await login(client, alice)
    response = await client.get("/auth/sessions", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    text = response.text
    for pair in (first, second):
        assert pair["refresh_token"] not in text
        assert pair["access_token"] not in text
        assert pair["refresh_token"].split(".", 1)[1][:16] not in text
    assert "lkrt." not in text
    assert "$argon2" not in text
    for entry in response.json()["sessions"]:
        assert set(entry) == SESSION_FIELDS
        assert not [key for key in entry if "hash" in key or "token" in key or "nonce" in key]


async def test_sessions_last_used_follows_refresh(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """A refresh moves the session's last use; its creation time stays."""
    pair = await login(client, alice)
    before = (await sessions(client, pair))[0]
    clock.advance(120)
    await assert_alive(client, pair)
    after = (await sessions(client, pair))[0]
    assert after["id"] == before["id"]
    assert after["created_at"] == before["created_at"]
    assert after["last_used_at"] == before["last_used_at"] + 120


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_sessions_without_token(client: httpx.AsyncClient, method: str) -> None:
    """No bearer token: 401 with a bare Bearer challenge."""
    path = "/auth/sessions" if method == "GET" else "/auth/sessions/abc"
    response = await client.request(method, path)
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MISSING_CHALLENGE


@pytest.mark.parametrize("token", ["a.b.c", "not-a-jwt", "lkrt.AAAA"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_sessions_with_bad_token(client: httpx.AsyncClient, method: str, token: str) -> None:
    """A bearer token that does not verify: 401 invalid_token with an RFC 6750 challenge."""
    path = "/auth/sessions" if method == "GET" else "/auth/sessions/abc"
    response = await client.request(method, path, headers=bearer(token))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_sessions_with_refresh_token_as_bearer(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """A refresh token is not an access token."""
    pair = await login(client, alice)
    response = await client.get("/auth/sessions", headers=bearer(pair["refresh_token"]))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- DELETE /auth/sessions/{sid} -------------------------------------------------------------


async def test_end_another_own_session(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """Ending another session of one's own: 204; that session's refresh and access tokens
    are refused at once; the caller's session lives on."""
    mine = await login(client, alice, agent="laptop")
    lost = await login(client, alice, agent="stolen phone")
    response = await client.delete(
        f"/auth/sessions/{lost['sid']}", headers=bearer(mine["access_token"])
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    await assert_dead(client, lost)
    await assert_alive(client, mine)
    assert [entry["id"] for entry in await sessions(client, mine)] == [mine["sid"]]


async def test_end_session_twice(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """An own session that has ended is no longer live: ending it again is 404."""
    mine = await login(client, alice)
    other = await login(client, alice)
    path = f"/auth/sessions/{other['sid']}"
    first = await client.delete(path, headers=bearer(mine["access_token"]))
    assert first.status_code == 204
    again = await client.delete(path, headers=bearer(mine["access_token"]))
    assert_error(again, 404, "not_found")


async def test_end_someone_elses_session(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    """Another user's sid is 404, the same answer as an unknown sid, and it stays alive."""
    mine = await login(client, alice)
    theirs = await login(client, bob)
    other = await client.delete(
        f"/auth/sessions/{theirs['sid']}", headers=bearer(mine["access_token"])
    )
    assert_error(other, 404, "not_found")
    unknown = await client.delete(
        "/auth/sessions/" + "0" * len(theirs["sid"]), headers=bearer(mine["access_token"])
    )
    assert_error(unknown, 404, "not_found")
    assert other.content == unknown.content
    assert stable_headers(other) == stable_headers(unknown)
    await assert_alive(client, theirs)
    await assert_alive(client, mine)


@pytest.mark.parametrize("sid", ["nope", "x" * 300, "%00", "..%2F..%2Fauth", "'; DROP TABLE x"])
async def test_end_unknown_session(
    client: httpx.AsyncClient, alice: dict[str, str], sid: str
) -> None:
    """Odd or unknown session ids are a plain 404 not_found."""
    mine = await login(client, alice)
    response = await client.delete(f"/auth/sessions/{sid}", headers=bearer(mine["access_token"]))
    assert_error(response, 404, "not_found")
    await assert_alive(client, mine)


async def test_end_own_current_session(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """Ending the caller's own current session works: it is a logout."""
    mine = await login(client, alice)
    other = await login(client, alice)
    response = await client.delete(
        f"/auth/sessions/{mine['sid']}", headers=bearer(mine["access_token"])
    )
    assert response.status_code == 204, response.text
    await assert_dead(client, mine)
    await assert_alive(client, other)


# --- POST /auth/logout-all -------------------------------------------------------------------


async def test_logout_all(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], clock: ManualClock
) -> None:
    """Every session of the caller's user ends at once, the caller's too; other users' live."""
    pairs = [await login(client, alice, agent=f"device {n}") for n in range(3)]
    bobs = await login(client, bob)
    clock.advance(1)  # the tokens were issued before (iat is whole seconds, core/epochs.py)
    response = await client.post("/auth/logout-all", headers=bearer(pairs[1]["access_token"]))
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    for pair in pairs:
        await assert_dead(client, pair)
    await assert_alive(client, bobs)
    # Not a lockout: logging in again starts a fresh session.
    fresh = await login(client, alice)
    assert [entry["id"] for entry in await sessions(client, fresh)] == [fresh["sid"]]


async def test_logout_all_needs_a_valid_token(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Without a bearer token, or with a bad one, 401; nothing is revoked."""
    pair = await login(client, alice)
    missing = await client.post("/auth/logout-all")
    assert_error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"] == MISSING_CHALLENGE
    forged = await client.post("/auth/logout-all", headers=bearer(pair["access_token"] + "x"))
    assert_error(forged, 401, "invalid_token")
    assert forged.headers["www-authenticate"] == INVALID_CHALLENGE
    refresh_as_bearer = await client.post("/auth/logout-all", headers=bearer(pair["refresh_token"]))
    assert_error(refresh_as_bearer, 401, "invalid_token")
    await assert_alive(client, pair)


async def test_logout_all_with_a_dead_token(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """The access token of an ended session cannot end the user's other sessions."""
    ended = await login(client, alice)
    other = await login(client, alice)
    out = await client.post("/auth/logout", headers=bearer(ended["access_token"]))
    assert out.status_code == 204
    response = await client.post("/auth/logout-all", headers=bearer(ended["access_token"]))
    assert_error(response, 401, "invalid_token")
    await assert_alive(client, other)


# --- POST /auth/password ---------------------------------------------------------------------


async def change_password(
    client: httpx.AsyncClient, pair: dict[str, Any], current: str, new: str
) -> httpx.Response:
    return await client.post(
        "/auth/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(pair["access_token"]),
    )


async def test_password_change(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], clock: ManualClock
) -> None:
    """204; the caller's session goes on, every other session of the user ends at once;
    the old password stops working and the new one works."""
    mine = await login(client, alice)
    others = [await login(client, alice) for _ in range(2)]
    bobs = await login(client, bob)
    clock.advance(1)
    response = await change_password(client, mine, alice["password"], ALICE_NEW)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    # The caller's access token right away, and its refresh token.
    me = await client.get("/auth/me", headers=bearer(mine["access_token"]))
    assert me.status_code == 200
    await assert_alive(client, mine)
    for pair in others:
        await assert_dead(client, pair)
    await assert_alive(client, bobs)
    assert [entry["id"] for entry in await sessions(client, mine)] == [mine["sid"]]
    old = await client.post("/auth/login", json=alice)
    assert_error(old, 401, "invalid_grant")
    new = await client.post("/auth/login", json={"username": "alice", "password": ALICE_NEW})
    assert new.status_code == 200, new.text


async def test_password_change_wrong_current(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """A wrong current password is 400 invalid_grant (not 401: the token is fine) and
    changes nothing."""
    mine = await login(client, alice)
    other = await login(client, alice)
    response = await change_password(client, mine, "not the password", ALICE_NEW)
    body = assert_error(response, 400, "invalid_grant")
    assert "not the password" not in body["error_description"]
    assert "www-authenticate" not in response.headers
    await assert_alive(client, mine)
    await assert_alive(client, other)
    assert (await client.post("/auth/login", json=alice)).status_code == 200
    wrong = await client.post("/auth/login", json={"username": "alice", "password": ALICE_NEW})
    assert_error(wrong, 401, "invalid_grant")


@pytest.mark.parametrize(
    "new",
    [
        "password1",  # common
        "Password1",  # common, whatever the case
        "12345678",  # common
        "latchkey",  # the service's name
        "short",  # too short
        "x" * 7,  # too short
        "alice-in-wonderland-77",  # contains the username
        "ALICE and a lot more words",  # contains the username, whatever the case
        "y" * 1025,  # too long
    ],
)
async def test_password_change_policy(
    client: httpx.AsyncClient, alice: dict[str, str], new: str
) -> None:
    """A new password that breaks the policy is 400 invalid_request; the description does not
    echo it; nothing changes."""
    mine = await login(client, alice)
    other = await login(client, alice)
    response = await change_password(client, mine, alice["password"], new)
    body = assert_error(response, 400, "invalid_request")
    assert new not in body["error_description"]
    assert new not in response.text
    await assert_alive(client, other)
    assert (await client.post("/auth/login", json=alice)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"current_password": "correct horse battery staple"},
        {"new_password": ALICE_NEW},
        {"current_password": 1, "new_password": ALICE_NEW},
        {"current_password": "correct horse battery staple", "new_password": None},
        {"current_password": ["x"], "new_password": ALICE_NEW},
        {"current_password": "correct horse battery staple", "new_password": {"$ne": 1}},
        {"current_password": "", "new_password": ALICE_NEW},
        {"current_password": "correct horse battery staple", "new_password": ""},
        {"current_password": "correct horse battery staple", "new_password": True},
        {"password": "correct horse battery staple", "new": ALICE_NEW},
    ],
)
async def test_password_change_wrong_fields(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict[str, Any]
) -> None:
    """Missing fields and wrong types are 400 invalid_request; nothing changes."""
    mine = await login(client, alice)
    response = await client.post("/auth/password", json=body, headers=bearer(mine["access_token"]))
    assert_error(response, 400, "invalid_request")
    assert (await client.post("/auth/login", json=alice)).status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[]", "application/json"),
        (b'"x"', "application/json"),
        (json.dumps({"current_password": "a", "new_password": "b"}).encode(), "text/plain"),
        (b"current_password=a&new_password=b", "application/x-www-form-urlencoded"),
    ],
)
async def test_password_change_not_json(
    client: httpx.AsyncClient, alice: dict[str, str], content: bytes, content_type: str
) -> None:
    """A body that is not a JSON object is 400 invalid_request."""
    mine = await login(client, alice)
    response = await client.post(
        "/auth/password",
        content=content,
        headers={**bearer(mine["access_token"]), "Content-Type": content_type},
    )
    assert_error(response, 400, "invalid_request")


async def test_password_change_needs_a_live_session(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Without a bearer token, or with the token of an ended session, 401; nothing changes."""
    body = {"current_password": alice["password"], "new_password": ALICE_NEW}
    missing = await client.post("/auth/password", json=body)
    assert_error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"] == MISSING_CHALLENGE
    ended = await login(client, alice)
    assert (await client.post("/auth/logout", headers=bearer(ended["access_token"]))).is_success
    response = await change_password(client, ended, alice["password"], ALICE_NEW)
    assert_error(response, 401, "invalid_token")
    assert (await client.post("/auth/login", json=alice)).status_code == 200


async def test_password_change_throttled(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """Repeated wrong current passwords get 429 with Retry-After — even for the right one,
    which then works once the wait is over."""
    mine = await login(client, alice)
    statuses = []
    for _ in range(10):
        response = await change_password(client, mine, "guess", ALICE_NEW)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
        assert_error(response, 400, "invalid_grant")
    assert statuses[-1] == 429, statuses
    assert statuses.count(400) >= 3
    wait = assert_retry_after(response)
    right = await change_password(client, mine, alice["password"], ALICE_NEW)
    assert_retry_after(right)
    await assert_alive(client, mine)  # the caller is slowed down, not logged out
    clock.advance(wait)
    done = await change_password(client, mine, alice["password"], ALICE_NEW)
    assert done.status_code == 204, done.text
    assert (
        await client.post("/auth/login", json={"username": "alice", "password": ALICE_NEW})
    ).status_code == 200


# --- POST /auth/register ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"username": "carol", "password": STRONG},
        {"username": "x", "password": "1"},
        {},
    ],
)
async def test_register_off_by_default(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, Any]
) -> None:
    """Registration is off unless enabled: 404 not_found whatever the body; no user made."""
    assert settings.allow_registration is False
    response = await client.post("/auth/register", json=body)
    assert_error(response, 404, "not_found")
    not_json = await client.post("/auth/register", content=b"{", headers=JSON_HEADERS)
    assert_error(not_json, 404, "not_found")
    login_attempt = await client.post("/auth/login", json={"username": "carol", "password": STRONG})
    assert_error(login_attempt, 401, "invalid_grant")


async def register(
    client: httpx.AsyncClient, clock: ManualClock, username: str, password: str = STRONG
) -> httpx.Response:
    """One registration, a minute after the previous one (below the per-address throttle)."""
    clock.advance(61)
    return await client.post("/auth/register", json={"username": username, "password": password})


async def test_register(open_client: httpx.AsyncClient, clock: ManualClock) -> None:
    """201 with the new user's id and name; the user can log in with that password."""
    response = await register(open_client, clock, "carol")
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"sub", "username"}
    assert body["username"] == "carol"
    assert STRONG not in response.text
    pair = await login(open_client, {"username": "carol", "password": STRONG})
    assert pair["sub"] == body["sub"]
    me = await open_client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.json()["username"] == "carol"


async def test_register_normalises_the_username(
    open_client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Surrounding white space is trimmed; the name logs in case-insensitively."""
    response = await register(open_client, clock, "  Dave.Smith  ")
    assert response.status_code == 201, response.text
    assert response.json()["username"] == "Dave.Smith"
    await login(open_client, {"username": "dave.smith", "password": STRONG})


@pytest.mark.parametrize(("first", "second"), [("bob", "Bob"), ("Bob", "bob"), ("bob", "BOB")])
async def test_register_taken_name(
    open_client: httpx.AsyncClient, clock: ManualClock, first: str, second: str
) -> None:
    """A name taken in another case is 409 conflict; the first account is untouched."""
    assert (await register(open_client, clock, first)).status_code == 201
    again = await register(open_client, clock, second, "a different strong passphrase")
    assert_error(again, 409, "conflict")
    await login(open_client, {"username": first, "password": STRONG})
    wrong = await open_client.post(
        "/auth/login", json={"username": first, "password": "a different strong passphrase"}
    )
    assert_error(wrong, 401, "invalid_grant")


async def test_register_name_of_an_existing_user(
    open_client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A name given by an administrator is taken too."""
    await services_of(open_client).accounts.add_user("alice", "correct horse battery staple")
    assert_error(await register(open_client, clock, "ALICE"), 409, "conflict")


@pytest.mark.parametrize(
    "username",
    [
        "ab",  # too short
        "",  # empty
        "   ",  # blank
        "a" * 65,  # too long
        "bob smith",  # space
        "bob\tsmith",  # tab
        "bob\x00",  # NUL
        "bob\x1b[31m",  # escape sequence
        "bob\u200dsmith",  # zero-width joiner
        "bob\U0001f600",  # emoji
        "_bob",  # must start with a letter or digit
        "bob/../x",  # slash
    ],
)
async def test_register_bad_username(
    open_client: httpx.AsyncClient, clock: ManualClock, username: str
) -> None:
    """Usernames that break the rules are 400 invalid_request; no account is made."""
    assert_error(await register(open_client, clock, username), 400, "invalid_request")
    assert await services_of(open_client).accounts.list_users() == []


@pytest.mark.parametrize(
    "password", ["password1", "Password1", "qwertyuiop", "latchkey", "short", "erin-is-cool-99"]
)
async def test_register_bad_password(
    open_client: httpx.AsyncClient, clock: ManualClock, password: str
) -> None:
    """Common, too short or containing the username: 400 invalid_request, not echoed."""
    response = await register(open_client, clock, "erin", password)
    body = assert_error(response, 400, "invalid_request")
    assert password not in body["error_description"]
    assert await services_of(open_client).accounts.list_users() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "frank"},
        {"password": STRONG},
        {"username": 7, "password": STRONG},
        {"username": "frank", "password": None},
        {"username": ["frank"], "password": STRONG},
    ],
)
async def test_register_malformed(
    open_client: httpx.AsyncClient, clock: ManualClock, body: dict[str, Any]
) -> None:
    """Missing fields and wrong types are 400 invalid_request."""
    clock.advance(61)
    assert_error(await open_client.post("/auth/register", json=body), 400, "invalid_request")
    not_json = await open_client.post("/auth/register", content=b"[1]", headers=JSON_HEADERS)
    assert_error(not_json, 400, "invalid_request")


async def test_register_throttled_per_address(
    open_client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Many registrations from one address: eventually 429 with Retry-After, which lifts."""
    statuses = []
    for n in range(30):
        response = await open_client.post(
            "/auth/register", json={"username": f"user{n:02d}", "password": STRONG}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
        assert response.status_code == 201, response.text
    assert statuses[-1] == 429, statuses
    wait = assert_retry_after(response)
    made = statuses.count(201)
    assert made >= 1
    assert len(await services_of(open_client).accounts.list_users()) == made
    clock.advance(wait)
    later = await open_client.post("/auth/register", json={"username": "late", "password": STRONG})
    assert later.status_code == 201, later.text


# --- disabled accounts -----------------------------------------------------------------------


async def test_disabled_account(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """Right password: 403 account_disabled. Wrong password: the unknown user's 401, to the
    byte. A session's refresh: 403 account_disabled; its access token: 401 at once."""
    pair = await login(client, alice)
    clock.advance(1)
    await services_of(client).accounts.set_disabled("alice", disabled=True)

    right = await client.post("/auth/login", json=alice)
    assert_error(right, 403, "account_disabled")
    assert right.headers["cache-control"] == "no-store"

    wrong = await client.post("/auth/login", json={"username": "alice", "password": "guess"})
    unknown = await client.post("/auth/login", json={"username": "mallory", "password": "guess"})
    assert_error(wrong, 401, "invalid_grant")
    assert (wrong.status_code, wrong.content) == (unknown.status_code, unknown.content)
    assert stable_headers(wrong) == stable_headers(unknown)

    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(refreshed, 403, "account_disabled")
    token = bearer(pair["access_token"])
    for response in (
        await client.get("/auth/me", headers=token),
        await client.get("/auth/sessions", headers=token),
        await client.post("/auth/logout", headers=token),
        await client.post("/auth/logout-all", headers=token),
    ):
        assert_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_disabled_then_enabled(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """Enabled again, the user logs in; the sessions ended by the disabling stay ended."""
    pair = await login(client, alice)
    clock.advance(1)
    services = services_of(client)
    await services.accounts.set_disabled("alice", disabled=True)
    await services.accounts.set_disabled("alice", disabled=False)
    await login(client, alice)
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(refreshed, 401, "invalid_grant")
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert_error(me, 401, "invalid_token")


async def test_disabled_account_cannot_change_password(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """A disabled user's leftover access token cannot change the password."""
    pair = await login(client, alice)
    await services_of(client).accounts.set_disabled("alice", disabled=True)
    response = await change_password(client, pair, alice["password"], ALICE_NEW)
    assert_error(response, 401, "invalid_token")
    await services_of(client).accounts.set_disabled("alice", disabled=False)
    await login(client, alice)


# --- enumeration -----------------------------------------------------------------------------


@pytest.mark.parametrize("unknown_name", ["mallory", "ALICEX", "alice2"])
async def test_unknown_user_and_wrong_password_look_alike(
    client: httpx.AsyncClient, alice: dict[str, str], unknown_name: str
) -> None:
    """Same status, body and headers (but the request id and date) for both failures."""
    wrong = await client.post("/auth/login", json={"username": "alice", "password": "nope"})
    unknown = await client.post("/auth/login", json={"username": unknown_name, "password": "nope"})
    assert_error(wrong, 401, "invalid_grant")
    assert wrong.status_code == unknown.status_code
    assert wrong.content == unknown.content
    assert stable_headers(wrong) == stable_headers(unknown)


# --- brute force -----------------------------------------------------------------------------


async def failed_login(client: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": "guess"})


async def test_login_throttle_grows_and_lifts(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """After the free failures: 429 with Retry-After (the right password too), growing with
    each further failure, and lifted once the clock passes it."""
    for _ in range(4):
        assert_error(await failed_login(client), 401, "invalid_grant")
    first_wait = assert_retry_after(await failed_login(client))
    assert_retry_after(await client.post("/auth/login", json=alice))  # no oracle while throttled
    clock.advance(first_wait)
    assert_error(await failed_login(client), 401, "invalid_grant")
    second_wait = assert_retry_after(await failed_login(client))
    assert second_wait > first_wait
    clock.advance(second_wait)
    await login(client, alice)  # lifted: no permanent lockout
    # A success forgets the account's failures: three free ones again.
    for _ in range(3):
        assert_error(await failed_login(client), 401, "invalid_grant")


async def test_login_throttle_never_locks_out_for_good(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """Failing at every chance until the hard cap: the wait never passes the window, and
    after it the right password works."""
    waits = []
    for _ in range(40):
        response = await failed_login(client)
        if response.status_code == 429:
            wait = assert_retry_after(response)
            assert wait <= settings.throttle_window
            waits.append(wait)
            if wait > 60:  # the hard cap of LATCHKEY_THROTTLE_ACCOUNT_FAILURES
                break
            clock.advance(wait)
        else:
            assert_error(response, 401, "invalid_grant")
    assert waits[-1] > 60, waits
    assert waits[:3] == [1, 2, 4]
    clock.advance(waits[-1])
    await login(client, alice)


async def test_login_throttle_is_per_account(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    """One account's failures do not throttle another account from the same address."""
    for _ in range(4):
        assert_error(await failed_login(client), 401, "invalid_grant")
    assert_retry_after(await failed_login(client))
    await login(client, bob)
    assert_error(await failed_login(client, "bob"), 401, "invalid_grant")


async def test_login_throttle_per_address_cap(
    client: httpx.AsyncClient, bob: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """Spraying many accounts from one address: free up to the address cap, then 429 for
    every account from there until the window has passed."""
    for n in range(settings.throttle_address_failures):
        assert_error(await failed_login(client, f"user{n:03d}"), 401, "invalid_grant")
    wait = assert_retry_after(await client.post("/auth/login", json=bob))
    assert wait <= settings.throttle_window
    clock.advance(wait)
    await login(client, bob)


async def test_unknown_accounts_are_throttled_alike(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Guessing at an unknown name is throttled like a real one: no way to tell them apart."""
    real, ghost = [], []
    for _ in range(5):
        real.append(await failed_login(client, "alice"))
        ghost.append(await failed_login(client, "ghost"))
    assert [r.status_code for r in real] == [r.status_code for r in ghost]
    assert [r.content for r in real] == [r.content for r in ghost]
    assert [r.headers.get("retry-after") for r in real] == [
        r.headers.get("retry-after") for r in ghost
    ]
    assert real[-1].status_code == 429


# --- OpenAPI ---------------------------------------------------------------------------------


NEW_ROUTES = {
    ("/auth/logout-all", "post"): {"204", "401"},
    ("/auth/sessions", "get"): {"200", "401"},
    ("/auth/sessions/{sid}", "delete"): {"204", "401", "404"},
    ("/auth/password", "post"): {"204", "400", "401", "429"},
    ("/auth/reauthenticate", "post"): {"200", "400", "401", "429"},
    ("/auth/register", "post"): {"201", "400", "404", "409", "429"},
}


async def test_openapi_lists_the_account_routes(client: httpx.AsyncClient) -> None:
    """/openapi.json describes every new route with its method and status codes."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for (path, method), codes in NEW_ROUTES.items():
        assert method in paths[path], (path, method)
        assert codes <= set(paths[path][method]["responses"]), (path, method)
    login_codes = set(paths["/auth/login"]["post"]["responses"])
    assert {"401", "403", "429"} <= login_codes
    assert "403" in paths["/auth/refresh"]["post"]["responses"]


# --- a recent login: POST /auth/reauthenticate and the operations that need it --------------


STEP_UP_ERROR = "insufficient_user_authentication"


def claims_of(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def assert_step_up(response: httpx.Response, max_age: int) -> None:
    """401 insufficient_user_authentication with max_age in the challenge (RFC 9470 §3)."""
    assert_error(response, 401, STEP_UP_ERROR)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="latchkey", error="{STEP_UP_ERROR}"'), challenge
    assert challenge.endswith(f'max_age="{max_age}"'), challenge


async def reauthenticate(
    client: httpx.AsyncClient, pair: dict[str, Any], password: str
) -> httpx.Response:
    return await client.post(
        "/auth/reauthenticate", json={"password": password}, headers=bearer(pair["access_token"])
    )


async def test_sensitive_operations_need_a_recent_login(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """Past LATCHKEY_FRESH_AUTH_MAX_AGE after the login, a valid access token can neither
    change the password nor end every session; nothing is changed."""
    mine = await login(client, alice)
    other = await login(client, alice)
    clock.advance(settings.fresh_auth_max_age + 1)
    mine["access_token"] = (
        await client.post("/auth/refresh", json={"refresh_token": mine["refresh_token"]})
    ).json()["access_token"]
    response = await change_password(client, mine, alice["password"], ALICE_NEW)
    assert_step_up(response, settings.fresh_auth_max_age)
    assert_step_up(
        await client.post("/auth/logout-all", headers=bearer(mine["access_token"])),
        settings.fresh_auth_max_age,
    )
    await assert_alive(client, other)
    assert (await client.post("/auth/login", json=alice)).status_code == 200


async def test_refresh_keeps_the_login_time(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """auth_time is the login's, and a refresh (no proof of the person) keeps it."""
    pair = await login(client, alice)
    assert claims_of(pair["access_token"])["auth_time"] == int(clock.now())
    login_time = int(clock.now())
    clock.advance(400)
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    claims = claims_of(refreshed.json()["access_token"])
    assert claims["auth_time"] == login_time
    assert claims["iat"] == login_time + 400


async def test_reauthenticate(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """The password again: a new access token of the same session (no refresh token, no new
    session) with auth_time now, which the sensitive operations accept; refreshes keep it."""
    pair = await login(client, alice)
    clock.advance(settings.fresh_auth_max_age + 60)
    response = await reauthenticate(client, pair, alice["password"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_ttl
    claims = claims_of(body["access_token"])
    assert claims["sid"] == pair["sid"]
    assert claims["auth_time"] == int(clock.now())
    assert [s["id"] for s in await sessions(client, {"access_token": body["access_token"]})] == [
        pair["sid"]
    ]
    # The session's refresh token still rotates, and its successors carry the new auth_time.
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert claims_of(refreshed.json()["access_token"])["auth_time"] == int(clock.now())
    done = await client.post("/auth/logout-all", headers=bearer(body["access_token"]))
    assert done.status_code == 204, done.text


async def test_reauthenticate_then_change_password(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    pair = await login(client, alice)
    clock.advance(settings.fresh_auth_max_age + 1)
    assert_step_up(
        await change_password(client, pair, alice["password"], ALICE_NEW),
        settings.fresh_auth_max_age,
    )
    pair["access_token"] = (await reauthenticate(client, pair, alice["password"])).json()[
        "access_token"
    ]
    response = await change_password(client, pair, alice["password"], ALICE_NEW)
    assert response.status_code == 204, response.text


async def test_reauthenticate_wrong_password(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """400 invalid_grant (the token is fine: no refresh loop); the session is unchanged."""
    pair = await login(client, alice)
    clock.advance(settings.fresh_auth_max_age + 1)
    response = await reauthenticate(client, pair, "not her password")
    body = assert_error(response, 400, "invalid_grant")
    assert "not her password" not in body["error_description"]
    assert "www-authenticate" not in response.headers
    assert_step_up(
        await client.post("/auth/logout-all", headers=bearer(pair["access_token"])),
        settings.fresh_auth_max_age,
    )
    await assert_alive(client, pair)


async def test_reauthenticate_is_throttled_with_the_login(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock
) -> None:
    """Wrong passwords here count as failed logins of the account: a stolen access token
    gains no guesses. 429 for the right password too, until the wait is over."""
    pair = await login(client, alice)
    statuses = []
    for _ in range(12):
        response = await reauthenticate(client, pair, "guess")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
        assert_error(response, 400, "invalid_grant")
    assert statuses[-1] == 429, statuses
    wait = assert_retry_after(response)
    assert_retry_after(await reauthenticate(client, pair, alice["password"]))
    assert_retry_after(await client.post("/auth/login", json=alice))
    clock.advance(wait)
    assert (await reauthenticate(client, pair, alice["password"])).status_code == 200


async def test_reauthenticate_needs_a_live_session(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    missing = await client.post("/auth/reauthenticate", json={"password": alice["password"]})
    assert_error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"] == MISSING_CHALLENGE
    ended = await login(client, alice)
    assert (await client.post("/auth/logout", headers=bearer(ended["access_token"]))).is_success
    assert_error(await reauthenticate(client, ended, alice["password"]), 401, "invalid_token")
    pair = await login(client, alice)
    for body in ({}, {"password": ""}, {"password": 1}, {"pass": "x"}):
        response = await client.post(
            "/auth/reauthenticate", json=body, headers=bearer(pair["access_token"])
        )
        assert_error(response, 400, "invalid_request")


async def test_reauthentication_is_audited(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    pair = await login(client, alice)
    assert (await reauthenticate(client, pair, "wrong one")).status_code == 400
    assert (await reauthenticate(client, pair, alice["password"])).status_code == 200
    trail = await services_of(client).audit.trail(username="alice")
    kinds = [(event.kind.value, event.sid, event.reason) for event in trail]
    assert ("reauthentication_failed", pair["sid"], "wrong_password") in kinds
    assert ("reauthenticated", pair["sid"], None) in kinds


async def test_fresh_auth_max_age_is_a_setting(settings: Settings, clock: ManualClock) -> None:
    """LATCHKEY_FRESH_AUTH_MAX_AGE sets the window and the challenge's max_age."""
    short = make_settings(
        settings.data_dir,
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        fresh_auth_max_age=30,
    )
    app = create_app(short, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.app = app  # type: ignore[attr-defined]
            await services_of(c).accounts.add_user("alice", STRONG)
            pair = await login(c, {"username": "alice", "password": STRONG})
            clock.advance(31)
            response = await c.post("/auth/logout-all", headers=bearer(pair["access_token"]))
            assert_step_up(response, 30)
