"""Helpers for tests/web/test_cookie_mode.py, test_csrf.py and test_cors.py: a client that talks
to the app the way a browser page does (https, the refresh cookie set by hand), and a strict
Set-Cookie parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from latchkey.core.clock import ManualClock
from latchkey.settings import Settings
from latchkey.web import create_app
from support import make_settings

BASE_URL = "https://testserver"  # the app's own origin in these tests
OWN_ORIGIN = "https://testserver"
COOKIE = "__Secure-latchkey-refresh"
CSRF = {"X-Latchkey-CSRF": "1"}
PROOF = {**CSRF, "Origin": OWN_ORIGIN}  # what the account page's fetch() sends
COOKIE_PAIR_FIELDS = {"access_token", "token_type", "expires_in", "refresh_expires_in"}
PAIR_FIELDS = COOKIE_PAIR_FIELDS | {"refresh_token"}
ALICE = {"username": "alice", "password": "correct horse battery staple"}


@asynccontextmanager
async def browser_client(
    settings: Settings, clock: ManualClock, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app on ``settings`` (plus ``overrides``) at https://testserver, with
    alice registered. Its cookie jar is emptied after every response: each test says which
    cookie it sends (``cookie()``), so nothing travels by accident."""
    if overrides:
        settings = make_settings(
            settings.data_dir,
            database_url=settings.database_url,
            secret_key=settings.secret_key,
            **overrides,
        )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        await app.state.container.accounts.add_user(
            ALICE["username"], ALICE["password"], scope="read"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:

            async def check(response: httpx.Response) -> None:
                await response.aread()
                # Never a server error; 503 (a database fault) is an answer, not a crash.
                assert response.status_code < 500 or response.status_code == 503, response.text
                media_type = response.headers.get("content-type", "")
                if response.status_code >= 400 and media_type.startswith("application/json"):
                    assert set(response.json()) == {"error", "error_description"}
                client.cookies.clear()

            client.event_hooks = {"request": [], "response": [check]}
            client.app = app  # type: ignore[attr-defined]
            yield client


def cookie(value: str) -> dict[str, str]:
    """The Cookie header a browser sends to /auth/* after a cookie-mode login."""
    return {"Cookie": f"{COOKIE}={value}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class SetCookie:
    """One Set-Cookie header, parsed strictly (RFC 6265bis §5.6)."""

    name: str
    value: str
    attributes: dict[str, str | None]  # lower-case name -> value (None: a flag)
    raw: str


def set_cookies(response: httpx.Response) -> list[SetCookie]:
    parsed = []
    for raw in response.headers.get_list("set-cookie"):
        first, *rest = raw.split(";")
        name, value = first.split("=", 1)
        attributes: dict[str, str | None] = {}
        for part in rest:
            key, sep, val = part.strip().partition("=")
            assert key.lower() not in attributes, f"repeated attribute in {raw!r}"
            attributes[key.lower()] = val if sep else None
        parsed.append(SetCookie(name.strip(), value.strip(), attributes, raw))
    return parsed


def the_cookie(response: httpx.Response) -> SetCookie:
    """The one Set-Cookie of the response, which must be the refresh cookie with exactly the
    attributes of web/cookies.py."""
    cookies = set_cookies(response)
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    (set_cookie,) = cookies
    assert set_cookie.name == COOKIE
    assert set_cookie.name.startswith("__Secure-")
    assert set(set_cookie.attributes) == {"path", "max-age", "httponly", "secure", "samesite"}
    assert set_cookie.attributes["path"] == "/auth"
    assert set_cookie.attributes["httponly"] is None
    assert set_cookie.attributes["secure"] is None
    assert set_cookie.attributes["samesite"] == "Strict"
    assert "domain" not in set_cookie.attributes  # host-only
    return set_cookie


def assert_cleared(response: httpx.Response) -> None:
    """The response tells the browser to drop the refresh cookie."""
    set_cookie = the_cookie(response)
    assert set_cookie.value == ""
    assert set_cookie.attributes["max-age"] == "0"


def assert_no_cookie(response: httpx.Response) -> None:
    assert response.headers.get_list("set-cookie") == []


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    return body


async def cookie_login(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """Log alice in in cookie mode: the body (no refresh token) and the cookie's value."""
    response = await client.post(
        "/auth/login", json={**ALICE, "cookie": True}, headers=PROOF if headers is None else headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == COOKIE_PAIR_FIELDS
    return body, the_cookie(response).value


async def cookie_refresh(
    client: httpx.AsyncClient, value: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /auth/refresh with no body, the cookie and (by default) the CSRF proof."""
    proof = PROOF if headers is None else headers
    return await client.post("/auth/refresh", headers={**proof, **cookie(value)})
