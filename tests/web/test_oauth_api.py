"""The OAuth endpoints over HTTP: the refresh grant of ``/oauth/token`` (RFC 6749 §6, §5),
revocation (RFC 7009), introspection (RFC 7662) and the RFC 8414 metadata that names them."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from latchkey.core.clock import ManualClock
from latchkey.core.verifier import AccessClaims
from latchkey.settings import Settings
from support import services_of

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN_FIELDS = {
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "scope",
}
ACCESS_INTROSPECTION_FIELDS = {
    "active",
    "scope",
    "client_id",
    "username",
    "token_type",
    "exp",
    "iat",
    "sub",
    "aud",
    "iss",
    "jti",
    "sid",
}
BASIC_CHALLENGE = 'Basic realm="latchkey"'


@pytest.fixture(autouse=True)
def _checked_responses(client: httpx.AsyncClient) -> None:
    """Every response: never a 5xx or a traceback; errors OAuth-style; /oauth/* never cached."""

    async def check(response: httpx.Response) -> None:
        await response.aread()
        where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text[:300]}"
        assert "Traceback" not in response.text, where
        if response.status_code >= 400:
            assert set(response.json()) == {"error", "error_description"}, where
        if response.request.url.path.startswith("/oauth/") and response.status_code != 405:
            assert response.headers["cache-control"] == "no-store", where
            assert response.headers["pragma"] == "no-cache", where

    client.event_hooks = {"request": [], "response": [check]}


async def login(client: httpx.AsyncClient, alice: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/auth/login", json=alice)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def grant(client: httpx.AsyncClient, refresh_token: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return await client.post("/oauth/token", data=data)


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert body["error_description"]
    return body  # type: ignore[no-any-return]


def assert_tokens(response: httpx.Response, settings: Settings) -> dict[str, Any]:
    """An RFC 6749 §5.1 answer: JSON, not cacheable, Bearer, lifetimes, scope."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == TOKEN_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_ttl
    assert body["refresh_token"].startswith("lkrt.")
    assert 0 < body["refresh_expires_in"] <= settings.refresh_ttl
    return body  # type: ignore[no-any-return]


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/auth/me", headers={"Authorization": f"Bearer {access_token}"})


# --- /oauth/token: the refresh grant ----------------------------------------------------------


async def test_refresh_grant(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """A refresh token from /auth/login is exchanged for a new access and refresh token."""
    pair = await login(client, alice)
    tokens = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    assert tokens["scope"] == "read write"
    assert tokens["refresh_token"] != pair["refresh_token"]
    answer = await me(client, tokens["access_token"])
    assert answer.status_code == 200
    assert answer.json()["username"] == "alice"


async def test_refresh_grant_accepts_a_charset_and_ignores_client_id(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """``; charset=UTF-8`` is fine, a public client's ``client_id`` and unknown parameters are
    ignored (RFC 6749 §3.1, §3.2.1)."""
    pair = await login(client, alice)
    content = f"grant_type=refresh_token&refresh_token={pair['refresh_token']}"
    content += "&client_id=my-spa&unknown=1"
    response = await client.post(
        "/oauth/token",
        content=content.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert_tokens(response, settings)


async def test_refresh_grant_rotates_and_detects_reuse(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """Each token works once; an old one after the grace window is reuse: 400 invalid_grant,
    and the whole session is revoked, its newest token and access token included."""
    pair = await login(client, alice)
    first = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    second = assert_tokens(await grant(client, first["refresh_token"]), settings)
    clock.advance(settings.refresh_grace + 1)
    assert_error(await grant(client, pair["refresh_token"]), 400, "invalid_grant")
    assert_error(await grant(client, second["refresh_token"]), 400, "invalid_grant")
    assert (await me(client, second["access_token"])).status_code == 401


async def test_refresh_grant_retry_within_grace_gets_the_same_successor(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """A retry with the previous token within the grace window returns the same refresh
    token, and the session goes on."""
    pair = await login(client, alice)
    first = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    clock.advance(settings.refresh_grace - 1)
    retry = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    assert retry["refresh_token"] == first["refresh_token"]
    assert_tokens(await grant(client, first["refresh_token"]), settings)


async def test_token_endpoint_and_auth_refresh_share_one_chain(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """/oauth/token and /auth/refresh advance the same chain: a token spent at one is reuse
    at the other."""
    pair = await login(client, alice)
    tokens = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    json_refresh = await client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert json_refresh.status_code == 200
    clock.advance(settings.refresh_grace + 1)
    assert_error(await grant(client, tokens["refresh_token"]), 400, "invalid_grant")
    again = await client.post(
        "/auth/refresh", json={"refresh_token": json_refresh.json()["refresh_token"]}
    )
    assert again.status_code == 401  # the session was revoked as reused


async def test_narrower_scope_narrows_only_the_access_token(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """RFC 6749 §6: a scope within the session's narrows the new access token; the session
    keeps its scope, so the next grant without ``scope`` has all of it again."""
    pair = await login(client, alice)
    narrow = assert_tokens(await grant(client, pair["refresh_token"], scope="read"), settings)
    assert narrow["scope"] == "read"
    assert (await me(client, narrow["access_token"])).json()["scope"] == "read"
    full = assert_tokens(await grant(client, narrow["refresh_token"]), settings)
    assert full["scope"] == "read write"
    same = assert_tokens(await grant(client, full["refresh_token"], scope="write read"), settings)
    assert same["scope"] == "read write"


async def test_empty_scope_counts_as_omitted(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """A parameter without a value is treated as omitted (RFC 6749 §3.2)."""
    pair = await login(client, alice)
    tokens = assert_tokens(await grant(client, pair["refresh_token"], scope=""), settings)
    assert tokens["scope"] == "read write"


@pytest.mark.parametrize("scope", ["read admin", "admin", 'read "write"', "read  write", " read"])
async def test_broader_or_malformed_scope_is_invalid_scope(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, scope: str
) -> None:
    """A scope the session lacks, or one that breaks RFC 6749 §3.3, is 400 invalid_scope —
    and the refresh token is not spent."""
    pair = await login(client, alice)
    assert_error(await grant(client, pair["refresh_token"], scope=scope), 400, "invalid_scope")
    assert_tokens(await grant(client, pair["refresh_token"]), settings)


async def test_forged_token_with_scope_is_invalid_grant(client: httpx.AsyncClient) -> None:
    """A refresh token the server never issued is invalid_grant, scope or not."""
    forged = "lkrt." + "A" * 96
    assert_error(await grant(client, forged, scope="admin"), 400, "invalid_grant")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"refresh_token=x", FORM_HEADERS["Content-Type"]),  # no grant_type
        (b"grant_type=refresh_token", FORM_HEADERS["Content-Type"]),  # no refresh_token
        (b"grant_type=refresh_token&refresh_token=", FORM_HEADERS["Content-Type"]),
        (b"grant_type=&refresh_token=x", FORM_HEADERS["Content-Type"]),
        (
            b"grant_type=refresh_token&grant_type=refresh_token&refresh_token=x",
            FORM_HEADERS["Content-Type"],
        ),
        (b"grant_type=refresh_token&refresh_token=a&refresh_token=b", FORM_HEADERS["Content-Type"]),
        (
            b"grant_type=refresh_token&refresh_token=x&scope=&scope=read",
            FORM_HEADERS["Content-Type"],
        ),
        (b'{"grant_type": "refresh_token", "refresh_token": "x"}', "application/json"),
        (b"grant_type=refresh_token&refresh_token=x", "text/plain"),
        (b"grant_type=refresh_token&refresh_token=x", ""),
        (b"grant_type=refresh_token&refresh_token=x", "multipart/form-data; boundary=x"),
        ("grant_type=refresh_token&refresh_token=\u00e9".encode(), FORM_HEADERS["Content-Type"]),
        (b"grant_type=refresh_token&refresh_token=%ff%fe", FORM_HEADERS["Content-Type"]),
        (b"grant_type=refresh_token&refresh_token=" + b"x" * 2000, FORM_HEADERS["Content-Type"]),
    ],
)
async def test_malformed_token_requests_are_invalid_request(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    """Not a form, a parameter missing, empty or repeated: 400 invalid_request (RFC 6749 §3.2,
    §5.2)."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/oauth/token", content=content, headers=headers)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "grant_type", ["password", "authorization_code", "client_credentials", "REFRESH_TOKEN"]
)
async def test_other_grants_are_unsupported(
    client: httpx.AsyncClient, alice: dict[str, str], grant_type: str
) -> None:
    """Only the refresh grant exists; the password grant is not a way around /auth/login."""
    data = {"grant_type": grant_type, **alice, "code": "x", "refresh_token": "x"}
    response = await client.post("/oauth/token", data=data)
    assert_error(response, 400, "unsupported_grant_type")


async def test_body_over_the_limit_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A form past LATCHKEY_MAX_BODY_BYTES is 413 invalid_request, as JSON bodies are."""
    content = b"grant_type=refresh_token&pad=" + b"x" * settings.max_body_bytes
    response = await client.post("/oauth/token", content=content, headers=FORM_HEADERS)
    assert_error(response, 413, "invalid_request")


async def test_invalid_expired_and_revoked_tokens_are_invalid_grant(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    """Forged, logged out and expired refresh tokens: 400 invalid_grant, never 401."""
    forged = "lkrt." + "A" * 96
    assert_error(await grant(client, forged), 400, "invalid_grant")
    assert_error(await grant(client, "not a token"), 400, "invalid_grant")

    logged_out = await login(client, alice)
    await client.post("/auth/logout", json={"refresh_token": logged_out["refresh_token"]})
    assert_error(await grant(client, logged_out["refresh_token"]), 400, "invalid_grant")

    idle = await login(client, alice)
    clock.advance(settings.refresh_ttl + 1)
    assert_error(await grant(client, idle["refresh_token"]), 400, "invalid_grant")


async def test_disabled_account_is_invalid_grant(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """A disabled account's refresh token: 400 invalid_grant here (not /auth/refresh's 403
    account_disabled), with the reason in the description."""
    pair = await login(client, alice)
    await services_of(client).accounts.set_disabled("alice", disabled=True)
    body = assert_error(await grant(client, pair["refresh_token"]), 400, "invalid_grant")
    assert "disabled" in body["error_description"]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
async def test_oauth_routes_are_post_only(client: httpx.AsyncClient, path: str) -> None:
    """GET on an OAuth endpoint is 405 (tokens never travel in a query string)."""
    response = await client.get(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# --- /oauth/revoke ---------------------------------------------------------------------------


async def revoke(client: httpx.AsyncClient, token: str, **extra: str) -> httpx.Response:
    return await client.post("/oauth/revoke", data={"token": token, **extra})


def assert_revoked_answer(response: httpx.Response) -> None:
    """RFC 7009 §2.2: 200 and nothing else to say."""
    assert response.status_code == 200, response.text
    assert response.content == b""


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "something_else"])
async def test_revoking_a_refresh_token_ends_its_session(
    client: httpx.AsyncClient, alice: dict[str, str], hint: str | None
) -> None:
    """Revoking the refresh token ends the session: the refresh token and the session's
    access token are refused afterwards. The hint, right or wrong, does not matter."""
    pair = await login(client, alice)
    extra = {"token_type_hint": hint} if hint else {}
    assert_revoked_answer(await revoke(client, pair["refresh_token"], **extra))
    assert_error(await grant(client, pair["refresh_token"]), 400, "invalid_grant")
    assert (await me(client, pair["access_token"])).status_code == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
async def test_revoking_an_access_token_ends_its_session(
    client: httpx.AsyncClient, alice: dict[str, str], hint: str | None
) -> None:
    """Revoking an access token ends its session: /auth/me refuses it, and the session's
    refresh token is invalid_grant."""
    pair = await login(client, alice)
    extra = {"token_type_hint": hint} if hint else {}
    assert_revoked_answer(await revoke(client, pair["access_token"], **extra))
    assert (await me(client, pair["access_token"])).status_code == 401
    assert_error(await grant(client, pair["refresh_token"]), 400, "invalid_grant")


async def test_revoking_other_sessions_leaves_this_one(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """Only the token's own session ends."""
    mine, other = await login(client, alice), await login(client, alice)
    assert_revoked_answer(await revoke(client, other["refresh_token"]))
    assert (await me(client, mine["access_token"])).status_code == 200
    assert_tokens(await grant(client, mine["refresh_token"]), settings)


@pytest.mark.parametrize(
    "token",
    [
        "unknown",
        "lkrt." + "A" * 96,  # right shape, wrong MAC
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "x" * 9000,  # longer than any access token
        "\u00e9t\u00e9",
    ],
)
async def test_revoking_unknown_tokens_is_200(client: httpx.AsyncClient, token: str) -> None:
    """An invalid token is no error (RFC 7009 §2.2)."""
    assert_revoked_answer(await revoke(client, token))


async def test_revoking_an_expired_access_token_is_200_and_changes_nothing(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    settings: Settings,
    clock: ManualClock,
) -> None:
    """An expired access token is an invalid token: 200, and its session goes on."""
    pair = await login(client, alice)
    clock.advance(settings.access_ttl)
    assert_revoked_answer(await revoke(client, pair["access_token"]))
    assert_tokens(await grant(client, pair["refresh_token"]), settings)


async def test_revoking_twice_is_200(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """A token of an ended session is revoked already: 200 again."""
    pair = await login(client, alice)
    assert_revoked_answer(await revoke(client, pair["refresh_token"]))
    assert_revoked_answer(await revoke(client, pair["refresh_token"]))
    assert_revoked_answer(await revoke(client, pair["access_token"]))


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", FORM_HEADERS["Content-Type"]),
        (b"token=", FORM_HEADERS["Content-Type"]),
        (b"token_type_hint=refresh_token", FORM_HEADERS["Content-Type"]),
        (b"token=a&token=b", FORM_HEADERS["Content-Type"]),
        (b'{"token": "x"}', "application/json"),
    ],
)
async def test_revoke_without_a_token_is_invalid_request(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    """No token parameter (or not a form): 400 invalid_request (RFC 7009 §2.2.1)."""
    response = await client.post(
        "/oauth/revoke", content=content, headers={"Content-Type": content_type}
    )
    assert_error(response, 400, "invalid_request")


# --- /oauth/introspect -----------------------------------------------------------------------


@pytest.fixture
async def resource_server(client: httpx.AsyncClient) -> tuple[str, str]:
    """A registered client: ``(client_id, client_secret)``."""
    registered, secret = await services_of(client).oauth.add_client("billing-api")
    return registered.id, secret


async def introspect(
    client: httpx.AsyncClient, token: str, credentials: tuple[str, str], *, post: bool = False
) -> dict[str, Any]:
    """Introspect with ``client_secret_basic`` (or ``client_secret_post``); the 200 body."""
    if post:
        data = {"token": token, "client_id": credentials[0], "client_secret": credentials[1]}
        response = await client.post("/oauth/introspect", data=data)
    else:
        response = await client.post("/oauth/introspect", data={"token": token}, auth=credentials)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def claims_of(client: httpx.AsyncClient, access_token: str) -> AccessClaims:
    return services_of(client).tokens.verify_access_token(access_token)


@pytest.mark.parametrize("post", [False, True], ids=["basic", "post"])
async def test_introspect_a_live_access_token(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    settings: Settings,
    post: bool,
) -> None:
    """A live access token is active, with its claims and the user's name (RFC 7662 §2.2)."""
    pair = await login(client, alice)
    claims = claims_of(client, pair["access_token"])
    answer = await introspect(client, pair["access_token"], resource_server, post=post)
    assert set(answer) == ACCESS_INTROSPECTION_FIELDS
    assert answer["active"] is True
    assert answer["token_type"] == "Bearer"
    assert answer["username"] == "alice"
    assert answer["scope"] == "read write"
    assert answer["iss"] == settings.issuer
    assert answer["aud"] == settings.audience
    for name in ("sub", "exp", "iat", "jti", "sid", "client_id"):
        assert answer[name] == claims[name], name  # type: ignore[literal-required]


async def test_introspect_a_narrowed_access_token(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    settings: Settings,
) -> None:
    """The scope told is the token's own, not the session's."""
    pair = await login(client, alice)
    tokens = assert_tokens(await grant(client, pair["refresh_token"], scope="write"), settings)
    answer = await introspect(client, tokens["access_token"], resource_server)
    assert answer["active"] is True
    assert answer["scope"] == "write"


async def test_introspect_inactive_access_tokens(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    settings: Settings,
    clock: ManualClock,
) -> None:
    """Garbage, forged, expired and revoked access tokens are all just ``{"active": false}``."""
    for token in ("garbage", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "lkrt." + "A" * 96):
        assert await introspect(client, token, resource_server) == {"active": False}

    logged_out = await login(client, alice)
    await client.post(
        "/auth/logout", headers={"Authorization": f"Bearer {logged_out['access_token']}"}
    )
    assert await introspect(client, logged_out["access_token"], resource_server) == {
        "active": False
    }

    expiring = await login(client, alice)
    clock.advance(settings.access_ttl - 1)
    assert (await introspect(client, expiring["access_token"], resource_server))["active"]
    clock.advance(1)
    assert await introspect(client, expiring["access_token"], resource_server) == {"active": False}


async def test_introspection_reads_the_session_row(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    clock: ManualClock,
) -> None:
    """A session revoked in the database by someone else (another instance, the CLI) is
    inactive at once, before this process's deny-list has heard of it."""
    pair = await login(client, alice)
    sid = claims_of(client, pair["access_token"])["sid"]
    services = services_of(client)
    assert await services.store.revoke_session(sid, "admin", clock.now())
    assert sid not in services.revocations.local  # the deny-list does not know yet
    assert await introspect(client, pair["access_token"], resource_server) == {"active": False}
    assert await introspect(client, pair["refresh_token"], resource_server) == {"active": False}


async def test_introspect_a_disabled_users_tokens(
    client: httpx.AsyncClient, alice: dict[str, str], resource_server: tuple[str, str]
) -> None:
    """Disabling the account makes its tokens inactive."""
    pair = await login(client, alice)
    await services_of(client).accounts.set_disabled("alice", disabled=True)
    for token in (pair["access_token"], pair["refresh_token"]):
        assert await introspect(client, token, resource_server) == {"active": False}


async def test_introspect_refresh_tokens(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    settings: Settings,
    clock: ManualClock,
) -> None:
    """The current refresh token of a live session is active with sub, exp and scope; a spent
    one is inactive — and introspecting it is not reuse: the session goes on."""
    pair = await login(client, alice)
    answer = await introspect(client, pair["refresh_token"], resource_server, post=True)
    claims = claims_of(client, pair["access_token"])
    assert answer["active"] is True
    assert answer["sub"] == claims["sub"]
    assert answer["sid"] == claims["sid"]
    assert answer["username"] == "alice"
    assert answer["scope"] == "read write"
    assert answer["exp"] == int(clock.now()) + settings.refresh_ttl
    assert "token_type" not in answer

    tokens = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    clock.advance(settings.refresh_grace + 1)
    assert await introspect(client, pair["refresh_token"], resource_server) == {"active": False}
    assert (await introspect(client, tokens["refresh_token"], resource_server))["active"]
    assert_tokens(await grant(client, tokens["refresh_token"]), settings)  # not revoked

    clock.advance(settings.refresh_ttl + 1)
    assert await introspect(client, tokens["refresh_token"], resource_server) == {"active": False}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def test_introspection_needs_client_credentials(
    client: httpx.AsyncClient, alice: dict[str, str], resource_server: tuple[str, str]
) -> None:
    """No, unknown, wrong or malformed credentials: 401 invalid_client with a Basic challenge
    (RFC 7662 §2.1, RFC 6749 §5.2) — and never a word about the token."""
    token = (await login(client, alice))["access_token"]
    client_id, secret = resource_server
    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, {}),
        ({}, {"client_id": client_id}),
        ({}, {"client_secret": secret}),
        ({}, {"client_id": client_id, "client_secret": secret + "x"}),
        ({}, {"client_id": "0" * 32, "client_secret": secret}),
        ({}, {"client_id": client_id.upper(), "client_secret": secret}),
        ({}, {"client_id": "billing-api", "client_secret": secret}),
        (basic(client_id, secret[:-1]), {}),
        (basic("f" * 32, secret), {}),
        (basic("\x00", secret), {}),
        ({"Authorization": "Basic !!!"}, {}),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {}),
        ({"Authorization": f"Bearer {token}"}, {}),
    ]
    for headers, fields in attempts:
        response = await client.post(
            "/oauth/introspect", data={"token": token, **fields}, headers=headers
        )
        assert_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"] == BASIC_CHALLENGE


async def test_removed_client_is_refused(
    client: httpx.AsyncClient, alice: dict[str, str], resource_server: tuple[str, str]
) -> None:
    """Once removed, a client's secret no longer works."""
    token = (await login(client, alice))["access_token"]
    assert (await introspect(client, token, resource_server))["active"]
    await services_of(client).oauth.remove_client(resource_server[0])
    response = await client.post("/oauth/introspect", data={"token": token}, auth=resource_server)
    assert_error(response, 401, "invalid_client")


async def test_two_authentication_methods_are_invalid_request(
    client: httpx.AsyncClient, alice: dict[str, str], resource_server: tuple[str, str]
) -> None:
    """Basic and a client_secret in the body at once: 400 (RFC 6749 §2.3); a client_id in the
    body that agrees with the header is fine, one that differs is not."""
    token = (await login(client, alice))["access_token"]
    client_id, secret = resource_server
    both = {"token": token, "client_id": client_id, "client_secret": secret}
    response = await client.post("/oauth/introspect", data=both, auth=resource_server)
    assert_error(response, 400, "invalid_request")
    other = {"token": token, "client_id": "0" * 32}
    response = await client.post("/oauth/introspect", data=other, auth=resource_server)
    assert_error(response, 400, "invalid_request")
    same = {"token": token, "client_id": client_id}
    response = await client.post("/oauth/introspect", data=same, auth=resource_server)
    assert response.json()["active"] is True


async def test_introspect_without_a_token_is_invalid_request(
    client: httpx.AsyncClient, resource_server: tuple[str, str]
) -> None:
    """An authenticated request without a token is 400 invalid_request."""
    response = await client.post(
        "/oauth/introspect", data={"token_type_hint": "access_token"}, auth=resource_server
    )
    assert_error(response, 400, "invalid_request")


async def test_client_secret_with_form_encoding_in_basic(
    client: httpx.AsyncClient, alice: dict[str, str], resource_server: tuple[str, str]
) -> None:
    """RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic; encoded or not,
    ours read the same."""
    token = (await login(client, alice))["access_token"]
    client_id, secret = resource_server
    encoded = "".join(f"%{ord(c):02X}" for c in secret)
    response = await client.post(
        "/oauth/introspect", data={"token": token}, headers=basic(client_id, encoded)
    )
    assert response.json()["active"] is True


async def test_no_token_or_secret_reaches_the_logs(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    resource_server: tuple[str, str],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Granting, introspecting, revoking and failing at each: no token or secret is logged."""
    caplog.set_level(logging.DEBUG)
    pair = await login(client, alice)
    tokens = assert_tokens(await grant(client, pair["refresh_token"]), settings)
    await grant(client, pair["refresh_token"], scope="admin")
    await introspect(client, tokens["access_token"], resource_server)
    await client.post("/oauth/introspect", data={"token": "x"}, auth=("0" * 32, "nope"))
    await revoke(client, tokens["access_token"])
    await grant(client, tokens["refresh_token"])
    secrets = {
        pair["access_token"],
        pair["refresh_token"],
        tokens["access_token"],
        tokens["refresh_token"],
        resource_server[1],
    }
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(map(str, vars(record).values()))
        for secret in secrets:
            assert secret not in text, record.name


# --- RFC 8414 metadata -----------------------------------------------------------------------


async def test_metadata_names_the_oauth_endpoints(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The metadata lists the token, revocation and introspection endpoints with their client
    authentication methods, only the refresh grant, no response types, and keeps latchkey's
    own endpoints."""
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    issuer = settings.issuer
    assert metadata["issuer"] == issuer
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
    assert metadata["token_endpoint_auth_methods_supported"] == ["none"]
    assert metadata["grant_types_supported"] == ["refresh_token"]
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert metadata["revocation_endpoint_auth_methods_supported"] == ["none"]
    assert metadata["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert metadata["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert metadata["response_types_supported"] == []
    assert "authorization_endpoint" not in metadata
    assert metadata["service_documentation"] == f"{issuer}/docs"
    assert metadata["login_endpoint"] == f"{issuer}/auth/login"
    assert metadata["refresh_endpoint"] == f"{issuer}/auth/refresh"
    assert metadata["userinfo_endpoint"] == f"{issuer}/auth/me"
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        assert (await client.post(path)).status_code != 404, path


async def test_openapi_describes_form_bodies(client: httpx.AsyncClient) -> None:
    """The three OAuth operations take form bodies in /openapi.json, and /docs shows them."""
    spec = (await client.get("/openapi.json")).json()
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert list(content) == ["application/x-www-form-urlencoded"], path
    assert "client_basic" in spec["components"]["securitySchemes"]
    page = (await client.get("/docs")).text
    assert "<code>application/x-www-form-urlencoded</code>" in page
