"""The HTTP API of docs/design.md §4 through the ASGI app: shapes, status codes, headers, errors."""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from latchkey.core.b64 import b64url_decode
from latchkey.core.clock import ManualClock
from latchkey.settings import Settings

# Marked at collection: the anyio marker tests/conftest.py adds later drops parametrize ids.
pytestmark = pytest.mark.anyio

MISSING_CHALLENGE = 'Bearer realm="latchkey"'
INVALID_CHALLENGE = 'Bearer realm="latchkey", error="invalid_token"'
PAIR_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def _no_server_errors(client: httpx.AsyncClient) -> None:
    """Every response in this module is checked: never a 5xx, never a traceback."""

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

    client.event_hooks = {"request": [], "response": [check]}


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An OAuth-style JSON error body with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    return body  # type: ignore[no-any-return]


def assert_pair(response: httpx.Response, settings: Settings) -> dict[str, Any]:
    """A 200 token pair of docs/design.md §4 that no cache may keep."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    pair = response.json()
    assert set(pair) == PAIR_FIELDS
    assert pair["token_type"] == "Bearer"
    assert isinstance(pair["access_token"], str)
    assert pair["access_token"].count(".") == 2
    assert isinstance(pair["refresh_token"], str)
    assert pair["refresh_token"].startswith("lkrt.")
    for field in ("expires_in", "refresh_expires_in"):
        assert type(pair[field]) is int
    assert pair["expires_in"] == settings.access_ttl
    assert 0 < pair["refresh_expires_in"] <= settings.refresh_ttl
    return pair  # type: ignore[no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, alice: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/auth/login", json=alice)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- login -----------------------------------------------------------------------------------


async def test_login_pair(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """POST /auth/login answers 200 with the token pair fields, types and no-store."""
    pair = assert_pair(await client.post("/auth/login", json=alice), settings)
    assert pair["refresh_expires_in"] == settings.refresh_ttl


async def test_login_failures_are_identical(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Unknown user and wrong password get the same 401 invalid_grant, byte for byte."""
    unknown = await client.post("/auth/login", json={"username": "mallory", "password": "x"})
    wrong = await client.post("/auth/login", json={"username": "alice", "password": "x"})
    assert_error(unknown, 401, "invalid_grant")
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")
    assert unknown.headers["cache-control"] == wrong.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"username": "alice", "password": }',
        b"",
        b"\xff\xfe\x00",
        b"{'username': 'alice', 'password': 'x'}",
        b'{"username": "alice"} trailing',
    ],
)
async def test_malformed_json(
    client: httpx.AsyncClient, alice: dict[str, str], content: bytes
) -> None:
    """A body that is not JSON is 400 invalid_request."""
    response = await client.post("/auth/login", content=content, headers=JSON_HEADERS)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"username": 42, "password": "x"},
        {"username": "alice", "password": 42},
        {"username": None, "password": "x"},
        {"username": ["alice"], "password": "x"},
        {"username": {"$ne": ""}, "password": "x"},
        {"username": True, "password": "x"},
        {"username": "", "password": "x"},
        {"username": "alice", "password": ""},
        {"username": "a" * 256, "password": "x"},
    ],
)
async def test_wrong_types(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict[str, Any]
) -> None:
    """Fields of the wrong type or out of bounds are 400 invalid_request."""
    assert_error(await client.post("/auth/login", json=body), 400, "invalid_request")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/login", {"username": "alice"}),
        ("/auth/login", {"password": "x"}),
        ("/auth/login", {}),
    ],
)
async def test_missing_field(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    """A missing required field is 400 invalid_request."""
    assert_error(await client.post(path, json=body), 400, "invalid_request")


@pytest.mark.parametrize("body", [None, {}, {"token": "lkrt.x"}, {"refresh_token": None}])
async def test_refresh_without_any_refresh_token(
    client: httpx.AsyncClient, body: dict[str, Any] | None
) -> None:
    """No refresh token in the body and no refresh cookie is 401 invalid_grant: the body is
    optional since cookie mode (the browser's token is in the cookie), so there is simply no
    grant to accept."""
    assert_error(await client.post("/auth/refresh", json=body), 401, "invalid_grant")


async def test_refresh_with_an_empty_chunked_body(client: httpx.AsyncClient) -> None:
    """An empty body sent chunked is no body: 401 invalid_grant as without one, not 400."""

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    response = await client.post("/auth/refresh", content=nothing(), headers=JSON_HEADERS)
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 401, "invalid_grant")


async def test_refresh_body_without_length_headers(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """HTTP/2 may send a body with neither Content-Length nor Transfer-Encoding (RFC 9113
    §8.1): the refresh token in it is read all the same."""
    pair = await login(client, alice)
    body = json.dumps({"refresh_token": pair["refresh_token"]}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": "POST",
        "scheme": "https",
        "path": "/auth/refresh",
        "raw_path": b"/auth/refresh",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    chunks = [
        {"type": "http.request", "body": body[:20], "more_body": True},
        {"type": "http.request", "body": body[20:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await client.app(scope, receive, send)  # type: ignore[attr-defined]
    assert sent[0]["status"] == 200
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert answer["refresh_token"] != pair["refresh_token"]
    assert answer["refresh_expires_in"] <= settings.refresh_ttl


@pytest.mark.parametrize("body", [[], ["alice", "x"], [{"username": "a", "password": "b"}], "x", 1])
@pytest.mark.parametrize("path", ["/auth/login", "/auth/refresh", "/auth/logout"])
async def test_non_object_json(client: httpx.AsyncClient, path: str, body: Any) -> None:
    """A JSON array or scalar instead of an object is 400 invalid_request."""
    assert_error(await client.post(path, json=body), 400, "invalid_request")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json"],
)
async def test_wrong_content_type(
    client: httpx.AsyncClient, alice: dict[str, str], content_type: str | None
) -> None:
    """JSON sent under another media type is 400 invalid_request."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post("/auth/login", content=json.dumps(alice), headers=headers)
    assert_error(response, 400, "invalid_request")


async def test_json_content_type_with_charset(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """application/json with a charset parameter is accepted."""
    response = await client.post(
        "/auth/login",
        content=json.dumps(alice),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert_pair(response, settings)


# --- body size -------------------------------------------------------------------------------


def padded_login(size: int) -> bytes:
    """A login body for a wrong password, exactly ``size`` bytes long."""
    base = json.dumps({"username": "alice", "password": "x", "pad": ""}).encode()
    body = base[:-2] + b"a" * (size - len(base)) + base[-2:]
    assert len(body) == size
    json.loads(body)
    return body


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_body_at_limit_is_read(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """A body of exactly 16 KiB is accepted and processed."""
    assert settings.max_body_bytes == 16 * 1024
    response = await client.post(
        "/auth/login", content=padded_login(16 * 1024), headers=JSON_HEADERS
    )
    assert_error(response, 401, "invalid_grant")


@pytest.mark.parametrize("path", ["/auth/login", "/auth/refresh", "/auth/logout"])
async def test_body_over_limit(client: httpx.AsyncClient, path: str) -> None:
    """A body over 16 KiB with an honest Content-Length is 413."""
    response = await client.post(path, content=padded_login(16 * 1024 + 1), headers=JSON_HEADERS)
    assert_error(response, 413, "invalid_request")


@pytest.mark.parametrize("path", ["/auth/login", "/auth/refresh", "/auth/logout"])
async def test_body_over_limit_without_content_length(client: httpx.AsyncClient, path: str) -> None:
    """A streamed body over 16 KiB without Content-Length (chunked) is 413."""
    response = await client.post(path, content=chunks(padded_login(20_000)), headers=JSON_HEADERS)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "invalid_request")


@pytest.mark.parametrize("declared", ["10", "0", "16384"])
async def test_body_over_limit_with_lying_content_length(
    client: httpx.AsyncClient, declared: str
) -> None:
    """A streamed body over 16 KiB whose Content-Length claims less is still 413."""
    response = await client.post(
        "/auth/login",
        content=chunks(padded_login(20_000)),
        headers={**JSON_HEADERS, "Content-Length": declared},
    )
    assert response.request.headers["content-length"] == declared
    assert_error(response, 413, "invalid_request")


async def test_declared_content_length_over_limit(client: httpx.AsyncClient) -> None:
    """A Content-Length over 16 KiB is refused with 413 before the body is read."""
    response = await client.post(
        "/auth/login",
        content=chunks(b'{"username": "a", "password": "b"}'),
        headers={**JSON_HEADERS, "Content-Length": "999999"},
    )
    assert_error(response, 413, "invalid_request")


@pytest.mark.parametrize("declared", [b"\xb2", b"9" * 5000], ids=["superscript-2", "5000-digits"])
async def test_malformed_content_length_is_a_client_error(
    client: httpx.AsyncClient, declared: bytes
) -> None:
    """A Content-Length that is not a plain decimal number is a 4xx, not a server error."""
    app = client.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        response = await raw.post(
            "/auth/login",
            content=chunks(b'{"username": "a", "password": "b"}'),
            headers=[(b"Content-Type", b"application/json"), (b"Content-Length", declared)],
        )
    assert response.status_code in (400, 413), response.text


# --- bearer routes ---------------------------------------------------------------------------


async def test_me(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """GET /auth/me with the access token answers the caller's identity."""
    pair = await login(client, alice)
    response = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    me = response.json()
    assert set(me) == {"sub", "username", "sid", "scope", "exp"}
    assert me["username"] == "alice"
    assert me["scope"] == "read write"
    assert isinstance(me["sub"], str)
    assert isinstance(me["sid"], str)
    assert type(me["exp"]) is int


async def test_me_without_token(client: httpx.AsyncClient) -> None:
    """/auth/me without credentials is 401 with a challenge that names no error."""
    response = await client.get("/auth/me")
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MISSING_CHALLENGE


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer lkrt.AAAA",
        "bearer",
        "Bearer ",
        "Bearer two tokens",
    ],
)
async def test_me_with_bad_token(client: httpx.AsyncClient, authorization: str) -> None:
    """/auth/me with a token that does not verify is 401 error="invalid_token"."""
    response = await client.get("/auth/me", headers={"Authorization": authorization})
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_me_with_refresh_token_as_bearer(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """A refresh token is not an access token."""
    pair = await login(client, alice)
    response = await client.get("/auth/me", headers=bearer(pair["refresh_token"]))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_me_with_tampered_token(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """An access token with a changed payload character is 401 invalid_token."""
    token = (await login(client, alice))["access_token"]
    header, payload, signature = token.split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    response = await client.get("/auth/me", headers=bearer(f"{header}.{flipped}.{signature}"))
    assert_error(response, 401, "invalid_token")


async def test_me_after_access_token_expiry(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """An access token past its lifetime is 401 invalid_token."""
    token = (await login(client, alice))["access_token"]
    clock.advance(settings.access_ttl + 1)
    response = await client.get("/auth/me", headers=bearer(token))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_me_after_logout(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """The access token of a logged-out session no longer passes /auth/me."""
    pair = await login(client, alice)
    out = await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    response = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert_error(response, 401, "invalid_token")


# --- logout ----------------------------------------------------------------------------------


async def test_logout_with_access_token(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """Logout with the bearer access token is 204 and the session's refresh token then fails."""
    pair = await login(client, alice)
    other = await login(client, alice)
    response = await client.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    refresh = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(refresh, 401, "invalid_grant")
    me = await client.get("/auth/me", headers=bearer(pair["access_token"]))
    assert_error(me, 401, "invalid_token")
    # Another session of the same user lives on.
    still = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert still.status_code == 200


async def test_logout_with_refresh_token(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """Logout with the refresh token in the body is 204, and logging out twice is too."""
    pair = await login(client, alice)
    for _ in range(2):
        response = await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert response.status_code == 204
    refresh = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(refresh, 401, "invalid_grant")


async def test_logout_with_bad_bearer(client: httpx.AsyncClient) -> None:
    """Logout with a bearer token that does not verify is 401 invalid_token."""
    response = await client.post("/auth/logout", headers=bearer("a.b.c"))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE


async def test_logout_with_forged_refresh_token(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Logout with a forged refresh token is 401 and does not end the real session."""
    pair = await login(client, alice)
    token = pair["refresh_token"]
    forged = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    response = await client.post("/auth/logout", json={"refresh_token": forged})
    assert_error(response, 401, "invalid_grant")
    refresh = await client.post("/auth/refresh", json={"refresh_token": token})
    assert refresh.status_code == 200


async def test_logout_without_credentials(client: httpx.AsyncClient) -> None:
    """Logout with an empty JSON object and no bearer token is 401 with a bare challenge."""
    response = await client.post("/auth/logout", json={})
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MISSING_CHALLENGE


async def test_logout_without_any_credential_or_body(client: httpx.AsyncClient) -> None:
    """A bare POST /auth/logout (no bearer, no body) is 401 with a bare challenge."""
    response = await client.post("/auth/logout")
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MISSING_CHALLENGE


# --- refresh ---------------------------------------------------------------------------------


async def test_refresh_pair(
    client: httpx.AsyncClient, alice: dict[str, str], settings: Settings
) -> None:
    """POST /auth/refresh answers a new token pair whose access token works."""
    pair = await login(client, alice)
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    rotated = assert_pair(response, settings)
    assert rotated["refresh_token"] != pair["refresh_token"]
    me = await client.get("/auth/me", headers=bearer(rotated["access_token"]))
    assert me.status_code == 200


async def test_refresh_replay_over_http(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """Within the window a retry gets the same token; after it, reuse kills the whole session."""
    pair = await login(client, alice)
    old = {"refresh_token": pair["refresh_token"]}
    first = assert_pair(await client.post("/auth/refresh", json=old), settings)
    clock.advance(5)
    retry = assert_pair(await client.post("/auth/refresh", json=old), settings)
    assert retry["refresh_token"] == first["refresh_token"]
    clock.advance(11)
    assert_error(await client.post("/auth/refresh", json=old), 401, "invalid_grant")
    newest = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(newest, 401, "invalid_grant")
    me = await client.get("/auth/me", headers=bearer(first["access_token"]))
    assert_error(me, 401, "invalid_token")


@pytest.mark.parametrize("token", ["lkrt.", "lkrt." + "A" * 96, "x" * 1024, "Bearer x"])
async def test_refresh_with_junk(client: httpx.AsyncClient, token: str) -> None:
    """A refresh token that is not one of ours is 401 invalid_grant."""
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    assert_error(response, 401, "invalid_grant")


@pytest.mark.parametrize("token", ["", "x" * 1025])
async def test_refresh_token_out_of_bounds(client: httpx.AsyncClient, token: str) -> None:
    """An empty or over-long refresh token is a malformed request."""
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    assert_error(response, 400, "invalid_request")


async def test_refresh_after_idle_expiry(
    client: httpx.AsyncClient, alice: dict[str, str], clock: ManualClock, settings: Settings
) -> None:
    """A refresh token unused past refresh_ttl is 401 invalid_grant."""
    pair = await login(client, alice)
    clock.advance(settings.refresh_ttl + 1)
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_error(response, 401, "invalid_grant")
    assert response.headers["cache-control"] == "no-store"


# --- discovery -------------------------------------------------------------------------------


PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def test_jwks(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """The JWKS lists public signing keys only, one of which signed our access token."""
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    jwks = response.json()
    assert set(jwks) == {"keys"}
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert {"kty", "kid", "alg", "use"} <= set(key)
        assert key["use"] == "sig"
        assert not PRIVATE_JWK_MEMBERS & set(key)
    header = (await login(client, alice))["access_token"].split(".")[0]
    kid = json.loads(b64url_decode(header))["kid"]
    assert kid in {key["kid"] for key in jwks["keys"]}


async def test_server_metadata(client: httpx.AsyncClient, settings: Settings) -> None:
    """RFC 8414 metadata names the issuer, the JWKS URI and the signing algorithms."""
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == settings.issuer
    assert metadata["jwks_uri"] == f"{settings.issuer}/.well-known/jwks.json"
    algs = metadata["access_token_signing_alg_values_supported"]
    assert algs == [settings.signing_alg]
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert {key["alg"] for key in jwks["keys"]} == set(algs)


async def test_openapi_lists_every_route(client: httpx.AsyncClient) -> None:
    """/openapi.json describes exactly the app's routes, with their methods."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    routes = [r for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    assert routes
    assert set(spec["paths"]) == {_template(route.path) for route in routes}
    for route in routes:
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert set(spec["paths"][_template(route.path)]) == methods, route.path


async def test_openapi_refs_resolve_and_parameters_are_typed(client: httpx.AsyncClient) -> None:
    """Every ``$ref`` of /openapi.json resolves from the document's root (a client generator
    reads them so), and every parameter (header, cookie, path) says its type."""
    spec = (await client.get("/openapi.json")).json()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    for ref in refs(spec):
        assert ref.startswith("#/"), ref
        target: object = spec
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]
    parameters = [
        parameter
        for operations in spec["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
    ]
    assert parameters
    for parameter in parameters:
        assert parameter["schema"].get("type") == "string", parameter


def _template(path: str) -> str:
    """A route's path as an OpenAPI path template: ``{asset:path}`` is ``{asset}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


async def test_docs_mention_every_route(client: httpx.AsyncClient) -> None:
    """/docs is an HTML page naming every route of the app."""
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for route in client.app.routes:  # type: ignore[attr-defined]
        assert f"<code>{_template(route.path)}</code>" in response.text


async def test_healthz(client: httpx.AsyncClient) -> None:
    """/healthz is 200."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/nope", "/auth", "/auth/login/extra", "/.well-known/"])
async def test_unknown_path(client: httpx.AsyncClient, path: str) -> None:
    """An unknown path is a 404 JSON error."""
    assert_error(await client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/login"),
        ("PUT", "/auth/refresh"),
        ("DELETE", "/auth/logout"),
        ("POST", "/auth/me"),
        ("POST", "/.well-known/jwks.json"),
        ("POST", "/healthz"),
    ],
)
async def test_wrong_method(client: httpx.AsyncClient, method: str, path: str) -> None:
    """A known path with the wrong method is a 405 JSON error with an Allow header."""
    response = await client.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"]


# --- fuzz ------------------------------------------------------------------------------------


def random_text(rng: random.Random, limit: int = 40) -> str:
    alphabet = string.printable + "äß€\U0001d518\u0000\u200b\ufeff\ud800\udfff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, limit)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**64), rng.randint(-(10**30), 10**30)])
    if kind == 3:
        return rng.choice([0.0, -1.5, 1e308, float("inf"), float("nan")])
    if kind == 4:
        return random_text(rng)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["username", "password", "refresh_token", random_text(rng, 8)]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_body(rng: random.Random, genuine: str) -> tuple[bytes, dict[str, str]]:
    """A random request body and headers: bytes, JSON values, near-miss credentials."""
    headers = {"Content-Type": "application/json"}
    kind = rng.randrange(7)
    if kind == 0:
        content = rng.randbytes(rng.randint(0, 300))
    elif kind == 1:
        content = json.dumps(random_json(rng)).encode()
    elif kind == 2:
        fields = {"username": random_text(rng), "password": random_text(rng)}
        content = json.dumps(fields).encode()
    elif kind == 3:
        chars = list(genuine)
        position = rng.randrange(len("lkrt."), len(chars))
        chars[position] = rng.choice(string.ascii_letters + string.digits + "-_+/=.")
        content = json.dumps({"refresh_token": "".join(chars)}).encode()
    elif kind == 4:
        token = "lkrt." + "".join(rng.choice(string.ascii_letters + "-_") for _ in range(96))
        content = json.dumps({"refresh_token": token}).encode()
    elif kind == 5:
        content = ("[" * rng.randint(1, 5000) + "]" * rng.randint(0, 5000)).encode()
    else:
        content = json.dumps({"refresh_token": random_json(rng), "username": 1}).encode()
    if rng.random() < 0.15:
        headers["Content-Type"] = rng.choice(["text/plain", "application/json; x", "", "*/*"])
    if rng.random() < 0.15:
        headers["Authorization"] = "Bearer " + "".join(
            rng.choice(string.ascii_letters + string.digits + "-._~+/=") for _ in range(60)
        )
    return content, headers


async def test_fuzz_never_5xx(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    """200 random bodies posted to login, refresh and logout never produce a 5xx."""
    rng = random.Random(20240611)
    genuine = (await login(client, alice))["refresh_token"]
    statuses: set[int] = set()
    for _ in range(200):
        content, headers = random_body(rng, genuine)
        for path in ("/auth/login", "/auth/refresh", "/auth/logout"):
            response = await client.post(path, content=content, headers=headers)
            assert 400 <= response.status_code < 500 or response.status_code in (200, 204)
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "error_description"}
            statuses.add(response.status_code)
    assert {400, 401} <= statuses
