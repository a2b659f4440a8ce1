"""The in-process deny-list: revoked sessions, and one cutoff per user for every session of it."""

from __future__ import annotations

import pytest

from latchkey.adapters.revocations import LocalDenyList, LocalRevocations
from latchkey.core.access import AccessTokenIssuer
from latchkey.core.clock import ManualClock
from latchkey.core.epochs import UserCutoff, first_issue_at
from latchkey.core.errors import RevokedToken
from latchkey.core.keys import SigningKey
from latchkey.core.verifier import Verifier

ISSUER = "https://auth.example.test"
AUDIENCE = "api"
TTL = 900


def issue(key: SigningKey, clock: ManualClock, *, sid: str, sub: str = "user-1") -> str:
    issuer = AccessTokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, clock=clock)
    return issuer.issue(subject=sub, sid=sid, scope="", auth_time=int(clock.now())).token


def verifier_for(key: SigningKey, clock: ManualClock, denied: LocalDenyList) -> Verifier:
    return Verifier(
        [key.public],
        issuer=ISSUER,
        audience=AUDIENCE,
        max_lifetime=TTL,
        clock=clock,
        revoked_sessions=denied,
    )


def test_tokens_around_a_cutoff_in_one_second() -> None:
    """Issued at 1000.2 (before the cutoff at 1000.6): refused. Issued at 1000.8, after the
    cutoff but in its second: the issuer waits for first_issue_at, and the token passes."""
    clock = ManualClock(1000.2)
    key = SigningKey.generate("ES256")
    denied = LocalDenyList(clock)
    verifier = verifier_for(key, clock, denied)
    before = issue(key, clock, sid="old")
    clock.set(1000.6)
    denied.add_user("user-1", clock.now(), clock.now() + TTL)
    clock.set(1000.8)
    with pytest.raises(RevokedToken):
        verifier.verify(before)
    with pytest.raises(RevokedToken):
        verifier.verify(issue(key, clock, sid="new"))
    clock.set(first_issue_at(1000.6))
    after = issue(key, clock, sid="new")
    assert verifier.verify(after)["sid"] == "new"


def test_the_exempt_session_and_other_users_are_untouched() -> None:
    clock = ManualClock(5000.0)
    key = SigningKey.generate("ES256")
    denied = LocalDenyList(clock)
    verifier = verifier_for(key, clock, denied)
    kept, other, stranger = (
        issue(key, clock, sid="kept"),
        issue(key, clock, sid="other"),
        issue(key, clock, sid="x", sub="user-2"),
    )
    clock.advance(0.5)
    denied.add_user("user-1", clock.now(), clock.now() + TTL, exempt_sid="kept")
    assert verifier.verify(kept)["sid"] == "kept"
    assert verifier.verify(stranger)["sub"] == "user-2"
    with pytest.raises(RevokedToken):
        verifier.verify(other)


def test_one_entry_per_user_whatever_its_sessions() -> None:
    """A user's cutoff is one entry; per-session entries stay one each."""
    clock = ManualClock(100.0)
    denied = LocalDenyList(clock)
    for n in range(3):
        denied.add_user("u", 100.0 + n, 100.0 + n + TTL)
    denied.add("sid-1", 100.0 + TTL)
    assert len(denied) == 2
    assert denied.cutoff("u") == UserCutoff(102.0)
    assert "sid-1" in denied
    assert "u" not in denied  # membership is for session ids only


def test_an_earlier_cutoff_arriving_late_changes_nothing() -> None:
    clock = ManualClock(100.0)
    denied = LocalDenyList(clock)
    denied.add_user("u", 150.0, 150.0 + TTL, exempt_sid="k")
    denied.add_user("u", 120.0, 120.0 + TTL)
    assert denied.cutoff("u") == UserCutoff(150.0, "k")
    assert denied.refuses("u", "s", 149)
    assert not denied.refuses("u", "k", 149)


def test_user_entries_expire_when_their_last_token_has() -> None:
    clock = ManualClock(100.0)
    denied = LocalDenyList(clock)
    denied.add_user("u", 100.0, 100.0 + TTL)
    clock.advance(TTL - 1)
    assert denied.refuses("u", "s", 99)
    clock.advance(1)
    assert not denied.refuses("u", "s", 99)
    assert denied.cutoff("u") is None
    assert len(denied) == 0


def test_refuses_ignores_claims_of_other_types() -> None:
    clock = ManualClock(100.0)
    denied = LocalDenyList(clock)
    denied.add_user("u", 100.0, 100.0 + TTL)
    assert not denied.refuses(None, None, 0)
    assert not denied.refuses(["u"], "s", 0)


@pytest.mark.anyio
async def test_local_revocations_publish_users() -> None:
    clock = ManualClock(100.0)
    revocations = LocalRevocations(clock)
    await revocations.publish_user("u", 100.0, 100.0 + TTL, exempt_sid="k")
    assert revocations.local.cutoff("u") == UserCutoff(100.0, "k")
