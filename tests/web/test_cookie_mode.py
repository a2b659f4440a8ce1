"""Cookie mode (docs/browser.md): the refresh token in an HttpOnly cookie instead of the body,
rotated on every refresh, cleared on logout and on a failed refresh; header mode unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cookie_support import (
    ALICE,
    COOKIE,
    COOKIE_PAIR_FIELDS,
    PAIR_FIELDS,
    PROOF,
    assert_cleared,
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
from latchkey.core.errors import ServiceUnavailable
from latchkey.settings import Settings
from support import services_of

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

NEW_PASSWORD = "plum orbit kettle saxophone"


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_client(settings, clock) as c:
        yield c


# --- login -----------------------------------------------------------------------------------


async def test_login_sets_the_cookie_and_keeps_the_token_out_of_the_body(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A cookie-mode login answers the pair without refresh_token and sets the refresh token
    in a __Secure- cookie: HttpOnly, Secure, SameSite=Strict, Path=/auth, no Domain, Max-Age
    equal to refresh_expires_in."""
    response = await client.post("/auth/login", json={**ALICE, "cookie": True}, headers=PROOF)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == COOKIE_PAIR_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_ttl
    set_cookie = the_cookie(response)
    assert set_cookie.value.startswith("lkrt.")
    assert set_cookie.value not in response.text
    max_age = set_cookie.attributes["max-age"]
    assert max_age is not None
    assert int(max_age) == body["refresh_expires_in"]
    assert 0 < int(max_age) <= settings.refresh_ttl
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200


async def test_cookie_field_false_is_header_mode(client: httpx.AsyncClient) -> None:
    """``"cookie": false`` is the ordinary login: refresh_token in the body, no cookie, and no
    CSRF proof needed."""
    response = await client.post("/auth/login", json={**ALICE, "cookie": False})
    assert response.status_code == 200, response.text
    assert set(response.json()) == PAIR_FIELDS
    assert_no_cookie(response)


@pytest.mark.parametrize("value", ["yes", 1, 0, "true", [], {}])
async def test_cookie_field_must_be_a_boolean(client: httpx.AsyncClient, value: object) -> None:
    """A ``cookie`` that is not a JSON boolean is 400 invalid_request, with no cookie set."""
    response = await client.post("/auth/login", json={**ALICE, "cookie": value}, headers=PROOF)
    assert_error(response, 400, "invalid_request")
    assert_no_cookie(response)


async def test_failed_cookie_login_sets_no_cookie(client: httpx.AsyncClient) -> None:
    """A wrong password in cookie mode is the usual 401, and no cookie."""
    body = {"username": "alice", "password": "wrong", "cookie": True}
    response = await client.post("/auth/login", json=body, headers=PROOF)
    assert_error(response, 401, "invalid_grant")
    assert_no_cookie(response)


# --- refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, {}], ids=["no-body", "empty-object"])
async def test_refresh_with_the_cookie(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, str] | None
) -> None:
    """With no refresh_token in the body, the cookie is used: a new access token in the body
    (no refresh_token) and the successor in the cookie."""
    _, first = await cookie_login(client)
    response = await client.post("/auth/refresh", json=body, headers={**PROOF, **cookie(first)})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    pair = response.json()
    assert set(pair) == COOKIE_PAIR_FIELDS
    successor = the_cookie(response)
    assert successor.value.startswith("lkrt.")
    assert successor.value != first
    assert successor.attributes["max-age"] == str(pair["refresh_expires_in"])
    assert 0 < pair["refresh_expires_in"] <= settings.refresh_ttl
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200


async def test_every_refresh_rotates_and_an_old_cookie_is_reuse(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """Each refresh sets a new value; presenting an older one after the grace window is
    reuse: 401, the cookie cleared, and the whole session revoked (the newest value and the
    newest access token fail too)."""
    _, first = await cookie_login(client)
    values = [first]
    for _ in range(3):
        response = await cookie_refresh(client, values[-1])
        assert response.status_code == 200, response.text
        values.append(the_cookie(response).value)
    assert len(set(values)) == len(values)
    newest_access = response.json()["access_token"]

    clock.advance(settings.refresh_grace + 1)
    reuse = await cookie_refresh(client, values[1])
    assert_error(reuse, 401, "invalid_grant")
    assert_cleared(reuse)

    after = await cookie_refresh(client, values[-1])
    assert_error(after, 401, "invalid_grant")
    assert_cleared(after)
    me = await client.get("/auth/me", headers=bearer(newest_access))
    assert_error(me, 401, "invalid_token")


async def test_retry_within_grace_gets_the_same_successor(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Two tabs refreshing with the same cookie within the grace window both get the same
    successor (the service's rule), not a revoked session."""
    _, first = await cookie_login(client)
    one = await cookie_refresh(client, first)
    clock.advance(1)
    two = await cookie_refresh(client, first)
    assert one.status_code == two.status_code == 200
    assert the_cookie(one).value == the_cookie(two).value


async def test_straggler_keeps_the_newer_cookie(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A request with an older cookie that arrives after two rotations, inside the grace
    window, is refused without touching the cookie: the browser keeps the newer value, which
    still refreshes."""
    _, first = await cookie_login(client)
    second = the_cookie(await cookie_refresh(client, first)).value
    clock.advance(1)
    third = the_cookie(await cookie_refresh(client, second)).value
    straggler = await cookie_refresh(client, first)
    assert_error(straggler, 401, "invalid_grant")
    assert_no_cookie(straggler)
    after = await cookie_refresh(client, third)
    assert after.status_code == 200, after.text


@pytest.mark.parametrize("value", ["", "junk", "lkrt." + "A" * 96])
async def test_refresh_with_a_bad_cookie_clears_it(client: httpx.AsyncClient, value: str) -> None:
    """A cookie that is no refresh token of ours is 401 invalid_grant and is cleared."""
    response = await cookie_refresh(client, value)
    assert_error(response, 401, "invalid_grant")
    assert_cleared(response)


async def test_refresh_after_idle_expiry_clears_the_cookie(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """A session past its idle expiry: 401 and the cookie cleared."""
    _, value = await cookie_login(client)
    clock.advance(settings.refresh_ttl + 1)
    response = await cookie_refresh(client, value)
    assert_error(response, 401, "invalid_grant")
    assert_cleared(response)


async def test_disabled_account_refresh_clears_the_cookie(client: httpx.AsyncClient) -> None:
    """A disabled account's cookie refresh is 403 account_disabled and clears the cookie."""
    _, value = await cookie_login(client)
    await services_of(client).accounts.set_disabled("alice", disabled=True)
    response = await cookie_refresh(client, value)
    assert_error(response, 403, "account_disabled")
    assert_cleared(response)


async def test_malformed_body_with_the_cookie_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not JSON, or has a refresh_token of the wrong type, is still 400; the
    cookie is kept (nothing was decided about it)."""
    _, value = await cookie_login(client)
    headers = {**PROOF, **cookie(value), "Content-Type": "application/json"}
    for content in (b"{", b'{"refresh_token": 42}', b"[]"):
        response = await client.post("/auth/refresh", content=content, headers=headers)
        assert_error(response, 400, "invalid_request")
        assert_no_cookie(response)
    assert (await cookie_refresh(client, value)).status_code == 200


async def test_body_token_wins_over_the_cookie(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """With refresh_token in the body, the request is in header mode even with a cookie: the
    body's session rotates, the answer has refresh_token and sets no cookie, and the cookie's
    session is untouched."""
    _, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    response = await client.post(
        "/auth/refresh",
        json={"refresh_token": other["refresh_token"]},
        headers={**PROOF, **cookie(value)},
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == PAIR_FIELDS
    assert_no_cookie(response)
    clock.advance(settings.refresh_grace + 1)
    assert (await cookie_refresh(client, value)).status_code == 200


async def test_short_access_tokens_refresh_through_the_cookie(
    settings: Settings, clock: ManualClock
) -> None:
    """LATCHKEY_ACCESS_TTL may be as short as 1 s (the browser tests use 2 s): the access
    token expires, and the cookie gets a new one."""
    async with browser_client(settings, clock, access_ttl=2) as client:
        body, value = await cookie_login(client)
        assert body["expires_in"] == 2
        clock.advance(2)
        expired = await client.get("/auth/me", headers=bearer(body["access_token"]))
        assert_error(expired, 401, "invalid_token")
        response = await cookie_refresh(client, value)
        assert response.status_code == 200, response.text
        fresh = await client.get("/auth/me", headers=bearer(response.json()["access_token"]))
        assert fresh.status_code == 200


# --- logout ----------------------------------------------------------------------------------


async def test_logout_with_the_cookie_revokes_and_clears(client: httpx.AsyncClient) -> None:
    """POST /auth/logout with only the cookie ends its session (204) and clears the cookie."""
    body, value = await cookie_login(client)
    response = await client.post("/auth/logout", headers={**PROOF, **cookie(value)})
    assert response.status_code == 204
    assert_cleared(response)
    assert_error(await cookie_refresh(client, value), 401, "invalid_grant")
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert_error(me, 401, "invalid_token")


async def test_logout_with_bearer_and_cookie(client: httpx.AsyncClient) -> None:
    """With a bearer token too, the bearer's session ends, and the cookie is cleared."""
    body, value = await cookie_login(client)
    headers = {**PROOF, **cookie(value), **bearer(body["access_token"])}
    response = await client.post("/auth/logout", headers=headers)
    assert response.status_code == 204
    assert_cleared(response)
    assert_error(await cookie_refresh(client, value), 401, "invalid_grant")


async def test_logout_twice_and_with_a_forged_cookie(client: httpx.AsyncClient) -> None:
    """Statuses as in header mode, and the cookie is cleared every time: an ended session's
    cookie is 204 again; a forged one is 401 invalid_grant."""
    _, value = await cookie_login(client)
    for _ in range(2):
        response = await client.post("/auth/logout", headers={**PROOF, **cookie(value)})
        assert response.status_code == 204
        assert_cleared(response)
    forged = value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB")
    response = await client.post("/auth/logout", headers={**PROOF, **cookie(forged)})
    assert_error(response, 401, "invalid_grant")
    assert_cleared(response)


async def test_logout_with_a_bad_bearer_keeps_the_cookie(client: httpx.AsyncClient) -> None:
    """A bearer token that does not verify is 401 invalid_token and ends nothing: the cookie
    stays, and its session goes on."""
    _, value = await cookie_login(client)
    headers = {**PROOF, **cookie(value), **bearer("a.b.c")}
    response = await client.post("/auth/logout", headers=headers)
    assert_error(response, 401, "invalid_token")
    assert_no_cookie(response)
    assert (await cookie_refresh(client, value)).status_code == 200


async def test_logout_that_fails_for_now_keeps_the_cookie(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the session cannot be ended right now (503), the cookie stays, so that signing
    out can be tried again; a live session is never left without its cookie."""
    _, value = await cookie_login(client)
    services = client.app.state.container  # type: ignore[attr-defined]

    async def unavailable(*args: object) -> None:
        raise ServiceUnavailable()

    with monkeypatch.context() as patch:
        patch.setattr(services.tokens, "logout_with_refresh_token", unavailable)
        response = await client.post("/auth/logout", headers={**PROOF, **cookie(value)})
    assert_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "1"
    assert_no_cookie(response)
    again = await client.post("/auth/logout", headers={**PROOF, **cookie(value)})
    assert again.status_code == 204
    assert_cleared(again)
    assert_error(await cookie_refresh(client, value), 401, "invalid_grant")


async def test_logout_all_clears_the_cookie(client: httpx.AsyncClient) -> None:
    """POST /auth/logout-all with the cookie ends every session and clears the cookie."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    headers = {**PROOF, **cookie(value), **bearer(body["access_token"])}
    response = await client.post("/auth/logout-all", headers=headers)
    assert response.status_code == 204
    assert_cleared(response)
    assert_error(await cookie_refresh(client, value), 401, "invalid_grant")
    again = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert_error(again, 401, "invalid_grant")


async def test_password_change_keeps_the_cookie(
    client: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    """A password change with the cookie (and the proof) sets no cookie: the caller's session
    and its cookie live on; the other sessions end."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    response = await client.post(
        "/auth/password",
        json={"current_password": ALICE["password"], "new_password": NEW_PASSWORD},
        headers={**PROOF, **cookie(value), **bearer(body["access_token"])},
    )
    assert response.status_code == 204, response.text
    assert_no_cookie(response)
    clock.advance(settings.refresh_grace + 1)
    assert (await cookie_refresh(client, value)).status_code == 200
    gone = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert_error(gone, 401, "invalid_grant")


async def test_ending_a_session_by_id_with_the_cookie(client: httpx.AsyncClient) -> None:
    """DELETE /auth/sessions/{sid} with the cookie and the proof works as without it."""
    body, value = await cookie_login(client)
    other = (await client.post("/auth/login", json=ALICE)).json()
    sessions = await client.get("/auth/sessions", headers=bearer(body["access_token"]))
    (other_sid,) = [s["id"] for s in sessions.json()["sessions"] if not s["current"]]
    response = await client.delete(
        f"/auth/sessions/{other_sid}",
        headers={**PROOF, **cookie(value), **bearer(body["access_token"])},
    )
    assert response.status_code == 204
    assert_no_cookie(response)
    gone = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert_error(gone, 401, "invalid_grant")


# --- LATCHKEY_COOKIE_DEFAULT and header mode -------------------------------------------------


async def test_cookie_default(settings: Settings, clock: ManualClock) -> None:
    """With LATCHKEY_COOKIE_DEFAULT=true a login without ``cookie`` is in cookie mode (and so
    needs the proof); ``"cookie": false`` still asks for header mode."""
    async with browser_client(settings, clock, cookie_default=True) as client:
        response = await client.post("/auth/login", json=ALICE, headers=PROOF)
        assert response.status_code == 200, response.text
        assert set(response.json()) == COOKIE_PAIR_FIELDS
        assert the_cookie(response).value.startswith("lkrt.")

        refused = await client.post("/auth/login", json=ALICE)
        assert_error(refused, 403, "access_denied")
        assert_no_cookie(refused)

        header_mode = await client.post("/auth/login", json={**ALICE, "cookie": False})
        assert header_mode.status_code == 200
        assert set(header_mode.json()) == PAIR_FIELDS
        assert_no_cookie(header_mode)


async def test_header_mode_is_unchanged(client: httpx.AsyncClient) -> None:
    """Without ``cookie`` (default off) and without the cookie: the pair with refresh_token,
    no Set-Cookie anywhere, no CSRF header needed."""
    login = await client.post("/auth/login", json=ALICE)
    assert set(login.json()) == PAIR_FIELDS
    assert_no_cookie(login)
    pair = login.json()
    refreshed = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert set(refreshed.json()) == PAIR_FIELDS
    assert_no_cookie(refreshed)
    token = refreshed.json()["access_token"]
    for path in ("/auth/logout-all", "/auth/logout"):
        response = await client.post(path, headers=bearer(token))
        assert_no_cookie(response)
    assert COOKIE not in str(login.headers)


async def test_openapi_describes_cookie_mode(client: httpx.AsyncClient) -> None:
    """/openapi.json documents the login's ``cookie`` field, the refresh cookie, the CSRF
    header and the 403 access_denied of every route the rule covers."""
    spec = (await client.get("/openapi.json")).json()
    login = spec["components"]["schemas"]["LoginRequest"]["properties"]
    assert "cookie" in login
    assert spec["components"]["securitySchemes"]["refresh_cookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
    }
    assert "CookieTokenResponse" in spec["components"]["schemas"]
    assert spec["paths"]["/auth/refresh"]["post"]["requestBody"]["required"] is False
    for path, method in [
        ("/auth/login", "post"),
        ("/auth/refresh", "post"),
        ("/auth/logout", "post"),
        ("/auth/logout-all", "post"),
        ("/auth/password", "post"),
        ("/auth/sessions/{sid}", "delete"),
    ]:
        operation = spec["paths"][path][method]
        names = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "X-Latchkey-CSRF" in names, path
        assert "access_denied" in operation["responses"]["403"]["description"], path
