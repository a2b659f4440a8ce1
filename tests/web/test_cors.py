"""CORS (web/cors.py) and LATCHKEY_CORS_ORIGINS: listed origins get their own origin back with
credentials, preflights included; unlisted ones and ``null`` get nothing; never ``*``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from cookie_support import ALICE, CSRF, browser_client, cookie, cookie_login
from latchkey.core.clock import ManualClock
from latchkey.settings import Settings, describe_error
from support import make_settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

SPA = "https://app.example.com"
OTHER = "http://localhost:5173"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-latchkey-csrf",
}


@pytest.fixture
def backend() -> str:
    """CORS is decided before any database work: SQLite only."""
    return "sqlite"


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_client(settings, clock, cors_origins=f"{SPA}, {OTHER}") as c:
        yield c


def assert_no_cors(response: httpx.Response) -> None:
    assert "access-control-allow-origin" not in response.headers


# --- preflight -------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [SPA, OTHER])
@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/auth/login", "POST"),
        ("/auth/refresh", "POST"),
        ("/auth/logout", "POST"),
        ("/auth/sessions/0123", "DELETE"),
        ("/auth/me", "GET"),
    ],
)
async def test_preflight_from_a_listed_origin(
    client: httpx.AsyncClient, origin: str, path: str, method: str
) -> None:
    """A listed origin's preflight is answered before routing: its own origin (never *),
    credentials allowed, the methods and headers the API needs, cached for 10 minutes."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,x-latchkey-csrf",
    }
    response = await client.options(path, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "DELETE"}
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "x-latchkey-csrf", "x-request-id"} <= allowed
    assert "*" not in allowed
    assert response.headers["access-control-max-age"] == "600"
    assert "origin" in response.headers["vary"].lower()


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://APP.example.com:443",
        "*",
    ],
)
async def test_preflight_from_another_origin_gets_nothing(
    client: httpx.AsyncClient, origin: str
) -> None:
    """Unlisted origins, ``null`` and near misses get no Access-Control-Allow-Origin: the
    browser refuses to send the request (and with it the CSRF header)."""
    response = await client.options("/auth/refresh", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code >= 400
    assert_no_cors(response)


async def test_preflight_for_an_unlisted_header_fails(client: httpx.AsyncClient) -> None:
    """Only the headers the API needs may be sent across origins."""
    headers = {"Origin": SPA, **PREFLIGHT, "Access-Control-Request-Headers": "x-evil"}
    response = await client.options("/auth/refresh", headers=headers)
    assert response.status_code == 400


# --- actual requests -------------------------------------------------------------------------


async def test_responses_to_a_listed_origin_carry_cors_headers(
    client: httpx.AsyncClient,
) -> None:
    """Successes and errors alike (a 401, the CSRF 403) carry the listed origin and
    credentials, so the page can read the OAuth error; Retry-After is readable."""
    ok = await client.post(
        "/auth/login", json={**ALICE, "cookie": True}, headers={**CSRF, "Origin": SPA}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SPA
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert ok.headers["access-control-expose-headers"] == "Retry-After"

    wrong = await client.post(
        "/auth/login", json={"username": "alice", "password": "x"}, headers={"Origin": SPA}
    )
    assert wrong.status_code == 401
    assert wrong.headers["access-control-allow-origin"] == SPA

    refused = await client.post("/auth/refresh", headers={"Origin": SPA, **cookie("x")})
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == SPA
    assert refused.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_responses_to_another_origin_carry_no_allow_origin(
    client: httpx.AsyncClient, origin: str
) -> None:
    """An unlisted origin (or ``null``) can send a simple request, but gets no
    Access-Control-Allow-Origin: its script cannot read the answer."""
    response = await client.post("/auth/login", json=ALICE, headers={"Origin": origin})
    assert_no_cors(response)


async def test_a_listed_origin_uses_cookie_mode(client: httpx.AsyncClient) -> None:
    """The SPA's flow: cookie login from its origin, then a refresh with the cookie."""
    spa = {**CSRF, "Origin": SPA}
    _, value = await cookie_login(client, headers=spa)
    response = await client.post("/auth/refresh", headers={**spa, **cookie(value)})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA


async def test_no_origins_no_cors(settings: Settings, clock: ManualClock) -> None:
    """With LATCHKEY_CORS_ORIGINS empty (the default) there is no CORS at all: a preflight
    is an ordinary OPTIONS (405) with no Access-Control-* header."""
    async with browser_client(settings, clock) as client:
        response = await client.options("/auth/refresh", headers={"Origin": SPA, **PREFLIGHT})
        assert response.status_code == 405
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
        login = await client.post("/auth/login", json=ALICE, headers={"Origin": SPA})
        assert_no_cors(login)


# --- settings --------------------------------------------------------------------------------


def test_comma_separated_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variable is a comma-separated list; spaces and empty items are ignored, hosts are
    lower-cased and default ports dropped (as browsers serialise Origin)."""
    monkeypatch.setenv(
        "LATCHKEY_CORS_ORIGINS",
        " https://App.Example.com ,http://localhost:5173,, https://b.example:443",
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origins == (
        "https://app.example.com",
        "http://localhost:5173",
        "https://b.example",
    )


def test_json_list_of_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON list is accepted too."""
    monkeypatch.setenv("LATCHKEY_CORS_ORIGINS", '["https://a.example", "http://[::1]:8080"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origins == ("https://a.example", "http://[::1]:8080")


def test_ipv6_origins_take_the_form_browsers_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """An IPv6 literal is written in its shortest lower-case form (RFC 5952), as in Origin."""
    monkeypatch.setenv("LATCHKEY_CORS_ORIGINS", "http://[0:0::1]:8080, https://[2001:DB8:0::A]")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origins == ("http://[::1]:8080", "https://[2001:db8::a]")


def test_no_origins_by_default() -> None:
    """Unset or empty: no origin is listed."""
    assert Settings(_env_file=None).cors_origins == ()  # type: ignore[call-arg]
    assert Settings(_env_file=None, cors_origins="").cors_origins == ()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "null",
        "https://a.example, *",
        "https://a.example/",
        "https://a.example/app",
        "https://a.example?x=1",
        "https://a.example#x",
        "https://user@a.example",
        "ftp://a.example",
        "a.example",
        "https://a.example:99999",
        "http://[::1::2]",
        "https://",
        "[not json",
    ],
)
def test_bad_origins_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """``*``, ``null``, paths (a trailing slash too), queries, other schemes: refused at
    start-up with one line that names LATCHKEY_CORS_ORIGINS."""
    monkeypatch.setenv("LATCHKEY_CORS_ORIGINS", value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    message = describe_error(caught.value)
    assert message.startswith("LATCHKEY_CORS_ORIGINS: ")
    assert "\n" not in message


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("2s", True), ("0", False)])
def test_access_ttl_may_be_one_second(tmp_path: Path, value: str, ok: bool) -> None:
    """LATCHKEY_ACCESS_TTL goes down to 1 s (browser tests run with 2 s); 0 is refused."""
    if ok:
        assert make_settings(tmp_path, access_ttl=value).access_ttl == int(value.rstrip("s"))
    else:
        with pytest.raises(ValidationError) as caught:
            make_settings(tmp_path, access_ttl=value)
        assert describe_error(caught.value).startswith("LATCHKEY_ACCESS_TTL: ")
