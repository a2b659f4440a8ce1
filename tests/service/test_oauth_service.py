"""The OAuth layer over the service (src/latchkey/services/oauth.py), without HTTP."""

from __future__ import annotations

import pytest

from latchkey.bootstrap import Container
from latchkey.core.clock import ManualClock
from latchkey.core.errors import InvalidClient, InvalidScope, NotFound, RejectedGrant
from latchkey.services import ClientInfo
from latchkey.services.oauth import OAuthService, requested_scopes

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")


@pytest.fixture
async def oauth(services: Container) -> OAuthService:
    await services.accounts.add_user("alice", PASSWORD, scope="read write")
    return services.oauth


async def test_service_never_issues_more_than_the_session_scope(
    oauth: OAuthService, services: Container
) -> None:
    """TokenService.refresh(scope=…) keeps only the session's scopes, whatever is asked: the
    check in front of it is not the only guard."""
    pair = await services.tokens.login("alice", PASSWORD, CLIENT)
    narrowed = await services.tokens.refresh(pair.refresh_token, CLIENT, scope="admin read")
    assert narrowed.scope == "read"
    assert services.tokens.verify_access_token(narrowed.access_token)["scope"] == "read"
    full = await services.tokens.refresh(narrowed.refresh_token, CLIENT)
    assert full.scope == "read write"


async def test_invalid_scope_spends_nothing(oauth: OAuthService, services: Container) -> None:
    """A broader scope is refused before the rotation: the same token then still works."""
    pair = await services.tokens.login("alice", PASSWORD, CLIENT)
    with pytest.raises(InvalidScope):
        await oauth.refresh_grant(pair.refresh_token, "read admin", CLIENT)
    assert (await oauth.refresh_grant(pair.refresh_token, None, CLIENT)).scope == "read write"


async def test_grant_errors_are_400(oauth: OAuthService, services: Container) -> None:
    """Every refusal of the grant is RejectedGrant: 400 invalid_grant (RFC 6749 §5.2)."""
    pair = await services.tokens.login("alice", PASSWORD, CLIENT)
    await services.accounts.set_disabled("alice", disabled=True)
    for token in (pair.refresh_token, "lkrt.nope"):
        with pytest.raises(RejectedGrant) as caught:
            await oauth.refresh_grant(token, None, CLIENT)
        assert (caught.value.status_code, caught.value.error) == (400, "invalid_grant")


@pytest.mark.parametrize("scope", ["read", "read write", "a!#[]~"])
def test_requested_scopes(scope: str) -> None:
    """RFC 6749 §3.3 scope tokens joined by single spaces."""
    assert requested_scopes(scope) == frozenset(scope.split(" "))


@pytest.mark.parametrize("scope", ["", " ", "read ", "a  b", "a\tb", 'a"', "a\\b", "é"])
def test_malformed_scopes(scope: str) -> None:
    with pytest.raises(InvalidScope):
        requested_scopes(scope)


async def test_clients_authenticate_until_removed(oauth: OAuthService, clock: ManualClock) -> None:
    """A client authenticates with its secret only; removed, it no longer does; removing an
    unknown or malformed id is NotFound."""
    client, secret = await oauth.add_client("billing-api")
    assert (await oauth.authenticate(client.id, secret)).id == client.id
    for client_id, attempt in ((client.id, secret[:-1]), ("0" * 32, secret), ("x", secret)):
        with pytest.raises(InvalidClient):
            await oauth.authenticate(client_id, attempt)
    assert [c.id for c in await oauth.list_clients()] == [client.id]
    await oauth.remove_client(client.id)
    with pytest.raises(InvalidClient):
        await oauth.authenticate(client.id, secret)
    for client_id in (client.id, "nope", "\x00" * 32):
        with pytest.raises(NotFound):
            await oauth.remove_client(client_id)


async def test_introspection_has_no_side_effect(
    oauth: OAuthService, services: Container, clock: ManualClock
) -> None:
    """Introspecting a spent refresh token says inactive and does not revoke the session,
    while the same token at the token endpoint would be reuse."""
    pair = await services.tokens.login("alice", PASSWORD, CLIENT)
    rotated = await services.tokens.refresh(pair.refresh_token, CLIENT)
    clock.advance(services.tokens.policy.grace + 1)
    assert await oauth.introspect(pair.refresh_token) == {"active": False}
    assert (await oauth.introspect(rotated.refresh_token))["active"] is True
    assert (await oauth.introspect(rotated.access_token))["active"] is True
