"""Interoperability: Authlib's OAuth 2.0 client against latchkey's OAuth endpoints, in-process
through httpx's ASGI transport. Authlib refreshes an expired token by itself through
/oauth/token, revokes through /oauth/revoke and introspects through /oauth/introspect."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from latchkey.bootstrap import Container

with warnings.catch_warnings():
    # Authlib 1.9 prefers its httpx2 fork and warns on import when it runs on httpx, which
    # latchkey and httpx.ASGITransport use. authlib.deprecate installs an "always" filter
    # when imported: import it first, then ignore; catch_warnings undoes both.
    import authlib.deprecate  # noqa: F401

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

pytestmark = pytest.mark.anyio

BASE = "http://testserver"


def app_of(client: httpx.AsyncClient) -> Starlette:
    app: Starlette = client.app  # type: ignore[attr-defined]
    return app


async def discover(client: httpx.AsyncClient) -> dict[str, Any]:
    """The RFC 8414 metadata, which is where a real client learns the endpoints."""
    return (await client.get("/.well-known/oauth-authorization-server")).json()  # type: ignore[no-any-return]


@pytest.fixture
async def tokens(client: httpx.AsyncClient, alice: dict[str, str]) -> dict[str, Any]:
    """A token pair from /auth/login, as Authlib keeps it: ``expires_at`` already past, so
    that Authlib refreshes before its first request (whatever the server's clock says)."""
    response = await client.post("/auth/login", json=alice)
    assert response.status_code == 200
    return {**response.json(), "expires_at": int(time.time()) - 3600}


@pytest.fixture
async def public_client(
    client: httpx.AsyncClient, tokens: dict[str, Any]
) -> AsyncIterator[tuple[AsyncOAuth2Client, list[dict[str, Any]]]]:
    """An Authlib client of the public kind (no secret) holding ``tokens``; the second item
    collects what its ``update_token`` callback receives."""
    metadata = await discover(client)
    updates: list[dict[str, Any]] = []

    async def update_token(token: dict[str, Any], refresh_token: str | None = None) -> None:
        updates.append({"token": dict(token), "refresh_token": refresh_token})

    oauth = AsyncOAuth2Client(
        client_id="example-spa",
        token=tokens,
        token_endpoint=metadata["token_endpoint"].replace(metadata["issuer"], BASE),
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        update_token=update_token,
        transport=httpx.ASGITransport(app=app_of(client)),
        base_url=BASE,
    )
    async with oauth:
        yield oauth, updates


async def test_authlib_refreshes_an_expired_token_by_itself(
    client: httpx.AsyncClient,
    public_client: tuple[AsyncOAuth2Client, list[dict[str, Any]]],
    tokens: dict[str, Any],
) -> None:
    """A request with an expired token makes Authlib call /oauth/token; ``update_token`` gets
    the rotated refresh token, the request goes through with the new access token, and the
    old refresh token is spent (a retry within the grace window gets the same successor)."""
    oauth, updates = public_client
    response = await oauth.get("/auth/me")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alice"

    assert len(updates) == 1
    new = updates[0]["token"]
    assert updates[0]["refresh_token"] == tokens["refresh_token"]
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    assert new["token_type"] == "Bearer"
    assert new["scope"] == "read write"
    assert new["expires_at"] > time.time()
    assert oauth.token["refresh_token"] == new["refresh_token"]

    retry = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert retry.json()["refresh_token"] == new["refresh_token"]

    again = await oauth.get("/auth/me")  # still fresh: no second refresh
    assert again.status_code == 200
    assert len(updates) == 1


async def test_authlib_revokes_through_the_revocation_endpoint(
    client: httpx.AsyncClient,
    public_client: tuple[AsyncOAuth2Client, list[dict[str, Any]]],
    tokens: dict[str, Any],
) -> None:
    """``revoke_token`` (RFC 7009) ends the session; its refresh token then fails."""
    oauth, _ = public_client
    metadata = await discover(client)
    response = await oauth.revoke_token(
        metadata["revocation_endpoint"].replace(metadata["issuer"], BASE),
        token=tokens["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert response.status_code == 200
    refused = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_authlib_introspects_as_a_resource_server(
    client: httpx.AsyncClient, tokens: dict[str, Any], method: str
) -> None:
    """A resource server's Authlib client, with the credentials of ``latchkey clients add``,
    introspects with either authentication method of the metadata."""
    services: Container = app_of(client).state.container
    registered, secret = await services.oauth.add_client("inventory-api")
    metadata = await discover(client)
    assert method in metadata["introspection_endpoint_auth_methods_supported"]
    url = metadata["introspection_endpoint"].replace(metadata["issuer"], BASE)
    async with AsyncOAuth2Client(
        client_id=registered.id,
        client_secret=secret,
        token_endpoint_auth_method=method,
        transport=httpx.ASGITransport(app=app_of(client)),
    ) as resource_server:
        response = await resource_server.introspect_token(url, token=tokens["access_token"])
        assert response.status_code == 200, response.text
        assert response.json()["active"] is True
        assert response.json()["username"] == "alice"
        response = await resource_server.introspect_token(url, token="not-a-token")
        assert response.json() == {"active": False}
