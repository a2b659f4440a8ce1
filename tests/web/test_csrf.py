"""The CSRF rule of web/csrf.py: a request that carries the refresh cookie, or a login that
asks for it, needs X-Latchkey-CSRF: 1 and an allowed origin, else 403 access_denied before
anything is read, rotated or revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cookie_support import (
    ALICE,
    CSRF,
    OWN_ORIGIN,
    PROOF,
    assert_error,
    assert_no_cookie,
    bearer,
    browser_client,
    cookie,
    cookie_login,
    cookie_refresh,
    the_cookie,
)
from latchkey.core.clock import ManualClock
from latchkey.settings import Settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

SPA = "https://app.example.com"  # listed in LATCHKEY_CORS_ORIGINS below
ISSUER = "https://auth.example.com"

REFUSED = {
    "no-csrf-header": {"Origin": OWN_ORIGIN},
    "csrf-header-0": {"X-Latchkey-CSRF": "0", "Origin": OWN_ORIGIN},
    "csrf-header-true": {"X-Latchkey-CSRF": "true", "Origin": OWN_ORIGIN},
    "foreign-origin": {**CSRF, "Origin": "https://evil.example"},
    "sibling-origin": {**CSRF, "Origin": "https://other.example.com"},
    "origin-null": {**CSRF, "Origin": "null"},
    "own-host-over-http": {**CSRF, "Origin": "http://testserver"},
    "own-host-other-port": {**CSRF, "Origin": "https://testserver:8443"},
    "origin-with-path": {**CSRF, "Origin": "https://testserver/"},
    "origin-not-serialised": {**CSRF, "Origin": "https://testserver:443"},  # compared exactly
    "cross-site-fetch": {**CSRF, "Sec-Fetch-Site": "cross-site"},
    "same-site-fetch": {**CSRF, "Sec-Fetch-Site": "same-site"},
    "no-origin-no-fetch-metadata": CSRF,
    "nothing": {},
}
ACCEPTED = {
    "own-origin": PROOF,
    "issuer-origin": {**CSRF, "Origin": ISSUER},
    "cors-origin": {**CSRF, "Origin": SPA},
    "same-origin-fetch": {**CSRF, "Sec-Fetch-Site": "same-origin"},
    "user-initiated-fetch": {**CSRF, "Sec-Fetch-Site": "none"},
}


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_client(settings, clock, cors_origins=SPA, issuer=ISSUER + "/latchkey") as c:
        yield c


async def assert_still_refreshes(
    client: httpx.AsyncClient, value: str, clock: ManualClock, settings: Settings
) -> None:
    """Proof that nothing was rotated or revoked: past the grace window, the same cookie
    still refreshes (a rotated one would be reuse and revoke the session)."""
    clock.advance(settings.refresh_grace + 1)
    response = await cookie_refresh(client, value)
    assert response.status_code == 200, response.text


def assert_refused(response: httpx.Response) -> None:
    """403 access_denied, and the cookie left alone (no Set-Cookie at all)."""
    body = assert_error(response, 403, "access_denied")
    assert "cross-site" in body["error_description"].lower()
    assert response.headers["cache-control"] == "no-store"
    assert_no_cookie(response)


# --- refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_refresh_without_the_proof_is_refused_and_rotates_nothing(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings, headers: dict[str, str]
) -> None:
    """A cookie refresh without both proofs is 403 access_denied, sets no cookie, and leaves
    the session exactly as it was."""
    _, value = await cookie_login(client)
    assert_refused(await cookie_refresh(client, value, headers=headers))
    await assert_still_refreshes(client, value, clock, settings)


@pytest.mark.parametrize("headers", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_refresh_with_the_proof(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """The header with the own origin, the issuer's, a listed CORS origin, or (without
    Origin) Sec-Fetch-Site same-origin or none: accepted."""
    _, value = await cookie_login(client)
    response = await cookie_refresh(client, value, headers=headers)
    assert response.status_code == 200, response.text
    assert the_cookie(response).value != value


async def test_two_origin_headers_are_refused(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """Origin twice (no browser does that) is refused even when both values are allowed."""
    _, value = await cookie_login(client)
    headers = [
        ("X-Latchkey-CSRF", "1"),
        ("Origin", OWN_ORIGIN),
        ("Origin", OWN_ORIGIN),
        ("Cookie", cookie(value)["Cookie"]),
    ]
    assert_refused(await client.post("/auth/refresh", headers=headers))
    await assert_still_refreshes(client, value, clock, settings)


async def test_refused_before_the_body_is_read(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """Without the proof even a malformed body is a 403, not a 400: the check comes first."""
    _, value = await cookie_login(client)
    headers = {"Origin": "https://evil.example", "Content-Type": "application/json"}
    response = await client.post(
        "/auth/refresh", content=b"{", headers={**headers, **cookie(value)}
    )
    assert_refused(response)
    await assert_still_refreshes(client, value, clock, settings)


async def test_an_empty_cookie_still_needs_the_proof(client: httpx.AsyncClient) -> None:
    """Carrying the cookie is what counts, whatever its value."""
    assert_refused(await client.post("/auth/refresh", headers=cookie("")))


# --- login -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_cookie_login_without_the_proof_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A login asking for cookie mode without both proofs is 403, sets no cookie, and is
    refused before the password is checked (a wrong one gets the same 403, not a 401)."""
    assert_refused(
        await client.post("/auth/login", json={**ALICE, "cookie": True}, headers=headers)
    )
    wrong = {"username": "alice", "password": "wrong", "cookie": True}
    assert_refused(await client.post("/auth/login", json=wrong, headers=headers))


async def test_header_mode_login_needs_no_proof(client: httpx.AsyncClient) -> None:
    """A login without cookie mode and without the cookie is not concerned by the rule."""
    response = await client.post("/auth/login", json=ALICE, headers={"Origin": "https://x.example"})
    assert response.status_code == 200


# --- logout, logout-all, password, sessions --------------------------------------------------


async def test_logout_without_the_proof_revokes_nothing(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """Logout with the cookie (with or without a bearer) and no proof: 403, no cookie
    cleared, the session and its access token live on."""
    body, value = await cookie_login(client)
    foreign = {**CSRF, "Origin": "https://evil.example"}
    for headers in ({}, foreign, bearer(body["access_token"])):
        assert_refused(await client.post("/auth/logout", headers={**headers, **cookie(value)}))
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    await assert_still_refreshes(client, value, clock, settings)


async def test_logout_all_without_the_proof_revokes_nothing(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """Logout-all with the cookie and no proof: 403, every session lives on."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    headers = {**bearer(body["access_token"]), **cookie(value)}
    assert_refused(await client.post("/auth/logout-all", headers=headers))
    await assert_still_refreshes(client, value, clock, settings)
    still = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert still.status_code == 200


async def test_password_change_without_the_proof_changes_nothing(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """A password change with the cookie and no proof: 403; the old password still works and
    the other sessions live on."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    response = await client.post(
        "/auth/password",
        json={"current_password": ALICE["password"], "new_password": "plum orbit kettle sax"},
        headers={"Sec-Fetch-Site": "cross-site", **bearer(body["access_token"]), **cookie(value)},
    )
    assert_refused(response)
    assert (await client.post("/auth/login", json=ALICE)).status_code == 200
    still = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert still.status_code == 200
    await assert_still_refreshes(client, value, clock, settings)


async def test_ending_a_session_without_the_proof_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    """DELETE /auth/sessions/{sid} with the cookie and no proof: 403, the session lives."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    sessions = await client.get("/auth/sessions", headers=bearer(body["access_token"]))
    (other_sid,) = [s["id"] for s in sessions.json()["sessions"] if not s["current"]]
    response = await client.delete(
        f"/auth/sessions/{other_sid}",
        headers={"Origin": "null", **CSRF, **bearer(body["access_token"]), **cookie(value)},
    )
    assert_refused(response)
    still = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert still.status_code == 200


# --- where the rule does not apply -----------------------------------------------------------


async def test_safe_methods_need_no_proof(client: httpx.AsyncClient) -> None:
    """GET /auth/me and /auth/sessions with the cookie and no proof are answered."""
    body, value = await cookie_login(client)
    for path in ("/auth/me", "/auth/sessions"):
        response = await client.get(path, headers={**bearer(body["access_token"]), **cookie(value)})
        assert response.status_code == 200


async def test_oauth_routes_are_untouched(client: httpx.AsyncClient) -> None:
    """The cookie's Path=/auth never reaches /oauth/*; a cookie sent there anyway changes
    nothing: the OAuth token endpoint answers as always."""
    pair = (await client.post("/auth/login", json=ALICE)).json()
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
        headers=cookie("lkrt.whatever"),
    )
    assert response.status_code == 200, response.text
