"""``latchkey user update``'s service, on SQLite and PostgreSQL: what a new scope or name does
to live sessions (docs/sessions.md, "Changing a user"), as another process would see it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from latchkey.bootstrap import Container, build
from latchkey.core.audit import AuditKind
from latchkey.core.clock import ManualClock
from latchkey.core.errors import Conflict, InvalidCredentials, InvalidRequest, NotFound
from latchkey.services import ClientInfo
from latchkey.services.lookup import NAME_TTL
from latchkey.settings import Settings

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
CLIENT = ClientInfo(user_agent="pytest", address="192.0.2.7")


@pytest.fixture
async def admin(settings: Settings, clock: ManualClock) -> AsyncIterator[Container]:
    """The administrator's command: another process on the same database."""
    services = build(settings, clock=clock)
    try:
        yield services
    finally:
        await services.close()


def scope_of(services: Container, access_token: str) -> str:
    return str(services.verifier.verify(access_token).get("scope", ""))


async def test_a_narrowed_scope_applies_at_the_next_refresh(
    services: Container, admin: Container
) -> None:
    await services.accounts.add_user("amy", PASSWORD, "read write admin")
    pair = await services.tokens.login("amy", PASSWORD, CLIENT)
    assert scope_of(services, pair.access_token) == "read write admin"

    update = await admin.accounts.update_user("amy", scope="read  write")
    sid = services.verifier.verify(pair.access_token)["sid"]
    assert (update.user.scope, update.narrowed, update.renamed_from) == ("read write", [sid], None)

    # The access token already issued keeps its scope until it expires; the next does not.
    assert scope_of(services, pair.access_token) == "read write admin"
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert scope_of(services, pair.access_token) == "read write"
    fresh = await services.tokens.login("amy", PASSWORD, CLIENT)
    assert scope_of(services, fresh.access_token) == "read write"


async def test_a_wider_scope_comes_with_the_next_login(
    services: Container, admin: Container
) -> None:
    await services.accounts.add_user("amy", PASSWORD, "read")
    pair = await services.tokens.login("amy", PASSWORD, CLIENT)
    update = await admin.accounts.update_user("amy", scope="read write")
    assert update.narrowed == []
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert scope_of(services, pair.access_token) == "read"  # not granted without a login
    fresh = await services.tokens.login("amy", PASSWORD, CLIENT)
    assert scope_of(services, fresh.access_token) == "read write"


async def test_an_empty_scope_takes_every_scope_away(services: Container, admin: Container) -> None:
    await services.accounts.add_user("amy", PASSWORD, "read")
    pair = await services.tokens.login("amy", PASSWORD, CLIENT)
    await admin.accounts.update_user("amy", scope="")
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert scope_of(services, pair.access_token) == ""


async def test_a_rename_is_the_login_name_and_reaches_me_within_the_ttl(
    services: Container, admin: Container, clock: ManualClock
) -> None:
    user = await services.accounts.add_user("amy", PASSWORD, "read")
    pair = await services.tokens.login("amy", PASSWORD, CLIENT)
    claims = services.tokens.verify_access_token(pair.access_token)
    assert (await services.tokens.me(claims))["username"] == "amy"

    update = await admin.accounts.update_user("AMY", new_username="amelia")
    assert (update.user.id, update.user.username, update.renamed_from) == (
        user.id,
        "amelia",
        "amy",
    )
    assert update.user.scope == "read"  # untouched
    with pytest.raises(InvalidCredentials):
        await services.tokens.login("amy", PASSWORD, CLIENT)
    await services.tokens.login("amelia", PASSWORD, CLIENT)

    # Another process read the old name: it answers with it for NAME_TTL at most.
    assert (await services.tokens.me(claims))["username"] == "amy"
    clock.advance(NAME_TTL)
    assert (await services.tokens.me(claims))["username"] == "amelia"
    # The session goes on.
    pair = await services.tokens.refresh(pair.refresh_token, CLIENT)
    assert services.verifier.verify(pair.access_token)["sub"] == user.id


async def test_update_is_audited_and_refuses_a_taken_or_bad_name(
    services: Container, admin: Container
) -> None:
    user = await services.accounts.add_user("amy", PASSWORD, "read")
    await services.accounts.add_user("bob", PASSWORD)
    with pytest.raises(Conflict):
        await admin.accounts.update_user("amy", new_username="BOB", scope="write")
    with pytest.raises(InvalidRequest):
        await admin.accounts.update_user("amy", new_username="a b")
    with pytest.raises(NotFound):
        await admin.accounts.update_user("nobody", scope="read")
    # Nothing of the refused updates was written.
    assert (await services.accounts.user_named("amy")).scope == "read"

    await admin.accounts.update_user("amy", new_username="amelia", scope="write")
    events = await services.audit.trail(username=user.id)
    assert [(e.kind, e.username, e.reason) for e in events if e.kind is AuditKind.USER_UPDATED] == [
        (AuditKind.USER_UPDATED, "amelia", "admin: scope username")
    ]


async def test_audit_finds_a_deleted_user_by_id_when_the_name_was_reused(
    services: Container,
) -> None:
    first = await services.accounts.add_user("amy", PASSWORD)
    await services.tokens.login("amy", PASSWORD, CLIENT)
    await services.accounts.delete_user("amy")
    second = await services.accounts.add_user("amy", PASSWORD)

    by_name = await services.audit.trail(username="amy")
    assert {event.user_id for event in by_name} == {second.id}
    by_id = await services.audit.trail(username=first.id)
    kinds = {event.kind for event in by_id}
    assert {event.user_id for event in by_id} == {first.id}
    assert {AuditKind.USER_CREATED, AuditKind.LOGIN_OK, AuditKind.USER_DELETED} <= kinds
    with pytest.raises(NotFound):
        await services.audit.trail(username="0" * 32)
