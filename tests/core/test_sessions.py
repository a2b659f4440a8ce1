"""Sessions: why a rotation's compare-and-swap failed, decided from data and the clock alone."""

from __future__ import annotations

import dataclasses
import random

import pytest

from latchkey.core.clock import ManualClock
from latchkey.core.refresh import RefreshToken, RefreshTokenCodec
from latchkey.core.sessions import (
    Outcome,
    Session,
    SessionPolicy,
    advance_marks,
    classify_failed_rotation,
    new_session,
)

POLICY = SessionPolicy(refresh_ttl=3600, session_ttl=86_400, grace=10)
NONCE = b"\x07" * 16


@pytest.fixture
def codec() -> RefreshTokenCodec:
    return RefreshTokenCodec(b"k" * 32)


def rotate(
    session: Session, codec: RefreshTokenCodec, presented: RefreshToken, now: float
) -> tuple[Session, RefreshToken]:
    """What the store's successful compare-and-swap writes (docs/design.md §2)."""
    successor = codec.successor(presented, NONCE)
    marks = advance_marks(session, now, POLICY.grace)
    rotated = dataclasses.replace(
        session,
        settled_generation=marks.settled_generation,
        mark_generation=marks.mark_generation,
        mark_at=marks.mark_at,
        generation=successor.generation,
        current_hash=successor.digest,
        previous_hash=presented.digest,
        rotation_nonce=NONCE,
        rotated_at=now,
        last_used_at=now,
        idle_expires_at=min(now + POLICY.refresh_ttl, session.absolute_expires_at),
    )
    return rotated, successor


@pytest.fixture
def chain(codec: RefreshTokenCodec, clock: ManualClock) -> tuple[list[Session], list[RefreshToken]]:
    """A session created at T0 and rotated three times, 60 s apart; the clock stops at the
    last rotation."""
    token = codec.first(codec.new_sid())
    sessions = [new_session(token, user_id="u1", scope="read", now=clock.now(), policy=POLICY)]
    tokens = [token]
    for _ in range(3):
        clock.advance(60)
        session, token = rotate(sessions[-1], codec, tokens[-1], clock.now())
        sessions.append(session)
        tokens.append(token)
    return sessions, tokens


def classify(session: Session | None, presented: RefreshToken, clock: ManualClock) -> Outcome:
    return classify_failed_rotation(session, presented, clock.now(), POLICY)


# --- grace replay ---------------------------------------------------------------------------


def test_previous_token_within_grace_is_a_replay(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """The immediately previous token, shortly after its rotation, is a grace replay."""
    sessions, tokens = chain
    clock.advance(5)
    assert classify(sessions[-1], tokens[-2], clock) is Outcome.GRACE_REPLAY


def test_grace_boundary(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """Exactly grace seconds after the rotation is still a replay; 1 ms later it is reuse."""
    sessions, tokens = chain
    assert classify(sessions[-1], tokens[-2], clock) is Outcome.GRACE_REPLAY  # same instant
    clock.advance(POLICY.grace)
    assert classify(sessions[-1], tokens[-2], clock) is Outcome.GRACE_REPLAY
    clock.advance(0.001)
    assert classify(sessions[-1], tokens[-2], clock) is Outcome.REUSE


def test_grace_zero_means_reuse(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """With grace 0, even an instant replay of the previous token is reuse."""
    sessions, tokens = chain
    policy = dataclasses.replace(POLICY, grace=0)
    assert classify_failed_rotation(sessions[-1], tokens[-2], clock.now(), policy) is Outcome.REUSE


@pytest.mark.parametrize("back", [2, 3])
def test_older_generation_out_of_the_window_is_reuse(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock, back: int
) -> None:
    """A genuine token that stopped being current 60 s or more ago is reuse."""
    sessions, tokens = chain
    assert classify(sessions[-1], tokens[-1 - back], clock) is Outcome.REUSE


def quick_chain(
    codec: RefreshTokenCodec, clock: ManualClock, gaps: list[float]
) -> tuple[Session, list[RefreshToken], list[float]]:
    """A session rotated once after each of ``gaps`` seconds; its last row, every token, and
    when each generation stopped being current."""
    token = codec.first(codec.new_sid())
    session = new_session(token, user_id="u1", scope="", now=clock.now(), policy=POLICY)
    tokens, stopped = [token], []
    for gap in gaps:
        clock.advance(gap)
        session, token = rotate(session, codec, tokens[-1], clock.now())
        tokens.append(token)
        stopped.append(clock.now())
    return session, tokens, stopped


def test_straggler_within_the_window_is_stale_not_reuse(
    codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """T0 retried as T0 → T1, then T1 → T2, then the first T0 arrives: refused, not theft."""
    session, tokens, _ = quick_chain(codec, clock, [1, 2])
    clock.advance(3)  # T0 stopped being current 5 s ago: inside the 10 s window
    assert classify(session, tokens[0], clock) is Outcome.STALE
    clock.advance(5)  # exactly 10 s: still inside
    assert classify(session, tokens[0], clock) is Outcome.STALE
    assert classify(session, tokens[1], clock) is Outcome.GRACE_REPLAY  # the previous one


def test_stale_of_an_expired_session_is_expired(
    codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """A straggler of a session that has expired since is EXPIRED (nothing to keep alive)."""
    session, tokens, _ = quick_chain(codec, clock, [1, 2])
    session = dataclasses.replace(session, idle_expires_at=clock.now())
    assert classify(session, tokens[0], clock) is Outcome.EXPIRED


def test_grace_zero_makes_every_older_token_reuse(
    codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """With the window off, a token that stopped being current an instant ago is reuse."""
    session, tokens, _ = quick_chain(codec, clock, [1, 1])
    policy = dataclasses.replace(POLICY, grace=0)
    for token in tokens[:2]:
        assert classify_failed_rotation(session, token, clock.now(), policy) is Outcome.REUSE


def test_marks_move_only_once_a_window_has_passed(
    codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """The rotation that finds the mark older than the window settles what lies below it
    and moves it to (generation rotated away, when the one before it was)."""
    start = clock.now()
    session, _, stopped = quick_chain(codec, clock, [1, 1])  # rotations at +1, +2
    # First rotation: no mark yet, moved to (0, None); second: unset again, so (1, +1).
    assert (session.settled_generation, session.mark_generation, session.mark_at) == (
        0,
        1,
        stopped[0],
    )
    marks = advance_marks(session, start + 11, POLICY.grace)  # mark exactly one window old
    assert marks == advance_marks(session, start + 3, POLICY.grace)
    assert (marks.settled_generation, marks.mark_generation, marks.mark_at) == (0, 1, stopped[0])
    moved = advance_marks(session, start + 11.5, POLICY.grace)
    assert (moved.settled_generation, moved.mark_generation, moved.mark_at) == (1, 2, stopped[1])


@pytest.mark.parametrize("seed", range(40))
def test_window_rule_over_random_schedules(
    codec: RefreshTokenCodec, clock: ManualClock, seed: int
) -> None:
    """Whatever the rotation times: a token that stopped being current at most one window ago
    is never reuse, and one that stopped more than two windows ago always is."""
    rng = random.Random(seed)
    gaps = [rng.choice([0.0, 0.3, 1.0, 4.0, 9.9, 10.0, 10.5, 25.0]) for _ in range(30)]
    session, tokens, stopped = quick_chain(codec, clock, gaps)
    last = clock.now()
    for offset in [0.0, 0.5, 3.0, 9.9, 10.0, 10.1, 15.0, 20.0, 20.1, 40.0]:
        now = last + offset
        for generation, at in enumerate(stopped):
            outcome = classify_failed_rotation(session, tokens[generation], now, POLICY)
            if now - at <= POLICY.grace:
                assert outcome in (Outcome.STALE, Outcome.GRACE_REPLAY), (generation, offset)
            if now - at > 2 * POLICY.grace:
                assert outcome is Outcome.REUSE, (generation, offset)


@pytest.mark.parametrize("seed", range(10))
def test_window_rule_is_exact_when_rotations_are_a_window_apart(
    codec: RefreshTokenCodec, clock: ManualClock, seed: int
) -> None:
    """A session that rotates at most once per window (the usual case): reuse exactly when the
    token stopped being current more than a window ago."""
    rng = random.Random(seed)
    gaps = [POLICY.grace + rng.choice([0.001, 0.5, 3.0, 60.0]) for _ in range(12)]
    session, tokens, stopped = quick_chain(codec, clock, gaps)
    last = clock.now()
    for offset in [0.0, 5.0, 9.999, 10.0, 10.001, 20.0, 30.0]:
        now = last + offset
        for generation, at in enumerate(stopped):
            outcome = classify_failed_rotation(session, tokens[generation], now, POLICY)
            within = now - at <= POLICY.grace
            assert (outcome is not Outcome.REUSE) == within, (generation, offset)


def test_previous_generation_with_other_hash_is_reuse(
    chain: tuple[list[Session], list[RefreshToken]], codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """A generation-1 token whose digest is not the stored previous hash is not a replay."""
    sessions, tokens = chain
    impostor = RefreshToken(tokens[-2].sid, tokens[-2].generation, b"\x00" * 32)
    assert impostor.digest != sessions[-1].previous_hash
    assert classify(sessions[-1], impostor, clock) is Outcome.REUSE


@pytest.mark.parametrize(
    ("field", "outcome"),
    [
        ("rotation_nonce", Outcome.STALE),
        ("rotated_at", Outcome.STALE),
        ("previous_hash", Outcome.REUSE),
    ],
)
def test_replay_needs_the_rotation_record(
    chain: tuple[list[Session], list[RefreshToken]],
    clock: ManualClock,
    field: str,
    outcome: Outcome,
) -> None:
    """Without the nonce or the rotation time no replay is possible, and the token, which may
    have been current within the window, is refused without revoking; without the previous
    hash the token is not known to be the chain's, and is reuse."""
    sessions, tokens = chain
    session = dataclasses.replace(sessions[-1], **{field: None})
    assert classify(session, tokens[-2], clock) is outcome


def test_replay_after_expiry_is_expired(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """A replay inside the grace window of a session that has since expired is EXPIRED."""
    sessions, tokens = chain
    session = dataclasses.replace(sessions[-1], idle_expires_at=clock.now() + 1)
    clock.advance(1)
    assert classify(session, tokens[-2], clock) is Outcome.EXPIRED


# --- revoked, expired, invalid ---------------------------------------------------------------


@pytest.mark.parametrize("index", [-1, -2, -4])
def test_revoked_session(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock, index: int
) -> None:
    """On a revoked session every token, current, previous or old, is REVOKED."""
    sessions, tokens = chain
    session = dataclasses.replace(
        sessions[-1], revoked_at=clock.now(), revoked_reason="reuse_detected"
    )
    assert classify(session, tokens[index], clock) is Outcome.REVOKED


def test_current_generation_expired_by_idle_time(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """The current token once the idle expiry has come is EXPIRED, not before."""
    sessions, tokens = chain
    session = sessions[-1]
    clock.set(session.idle_expires_at - 0.001)
    assert classify(session, tokens[-1], clock) is Outcome.INVALID
    clock.set(session.idle_expires_at)
    assert classify(session, tokens[-1], clock) is Outcome.EXPIRED


def test_current_generation_expired_by_absolute_time(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """The current token after the absolute expiry is EXPIRED, even if idle time is left."""
    sessions, tokens = chain
    session = dataclasses.replace(
        sessions[-1], idle_expires_at=clock.now() + 10_000, absolute_expires_at=clock.now() + 5
    )
    clock.advance(5)
    assert classify(session, tokens[-1], clock) is Outcome.EXPIRED


def test_current_generation_not_expired_is_invalid(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """A current, live token whose swap failed anyway is INVALID (nothing to explain it)."""
    sessions, tokens = chain
    assert classify(sessions[-1], tokens[-1], clock) is Outcome.INVALID


def test_current_generation_with_other_hash_is_invalid(
    chain: tuple[list[Session], list[RefreshToken]], clock: ManualClock
) -> None:
    """A token of the current generation that is not the stored one is INVALID, even expired."""
    sessions, tokens = chain
    impostor = RefreshToken(tokens[-1].sid, tokens[-1].generation, b"\x00" * 32)
    assert classify(sessions[-1], impostor, clock) is Outcome.INVALID
    clock.set(sessions[-1].expires_at())
    assert classify(sessions[-1], impostor, clock) is Outcome.INVALID


def test_future_generation_is_invalid(
    chain: tuple[list[Session], list[RefreshToken]], codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """A generation ahead of the session's is INVALID."""
    sessions, tokens = chain
    ahead = codec.successor(tokens[-1], NONCE)
    assert classify(sessions[-1], ahead, clock) is Outcome.INVALID


def test_unknown_session_is_invalid(codec: RefreshTokenCodec, clock: ManualClock) -> None:
    """No session row for the token's sid is INVALID."""
    assert classify(None, codec.first(codec.new_sid()), clock) is Outcome.INVALID


# --- new_session ------------------------------------------------------------------------------


def test_new_session_fields(codec: RefreshTokenCodec, clock: ManualClock) -> None:
    """A new session holds the first token's digest and both expiries from now."""
    token = codec.first(codec.new_sid())
    now = clock.now()
    session = new_session(
        token,
        user_id="u1",
        scope="read write",
        now=now,
        policy=POLICY,
        user_agent="curl/8",
        address="192.0.2.1",
    )
    assert session.sid == token.sid and session.generation == 0
    assert session.current_hash == token.digest
    assert session.previous_hash is None and session.rotation_nonce is None
    assert session.rotated_at is None and session.revoked_at is None
    assert session.created_at == session.last_used_at == now
    assert session.idle_expires_at == now + POLICY.refresh_ttl
    assert session.absolute_expires_at == now + POLICY.session_ttl
    assert session.expires_at() == now + POLICY.refresh_ttl
    assert (session.scope, session.user_agent, session.address) == (
        "read write",
        "curl/8",
        "192.0.2.1",
    )


def test_new_session_caps_idle_expiry_at_absolute_expiry(
    codec: RefreshTokenCodec, clock: ManualClock
) -> None:
    """When refresh_ttl exceeds session_ttl, the idle expiry is the absolute one."""
    policy = SessionPolicy(refresh_ttl=86_400, session_ttl=3600, grace=10)
    session = new_session(
        codec.first(codec.new_sid()), user_id="u1", scope="", now=clock.now(), policy=policy
    )
    assert session.idle_expires_at == session.absolute_expires_at == clock.now() + 3600
    assert session.expires_at() == clock.now() + 3600


def test_is_live(codec: RefreshTokenCodec, clock: ManualClock) -> None:
    """A session is live until it expires or is revoked."""
    session = new_session(
        codec.first(codec.new_sid()), user_id="u1", scope="", now=clock.now(), policy=POLICY
    )
    assert session.is_live(clock.now())
    assert session.is_live(session.expires_at() - 0.001)
    assert not session.is_live(session.expires_at())
    revoked = dataclasses.replace(session, revoked_at=clock.now(), revoked_reason="logout")
    assert not revoked.is_live(clock.now())


def test_default_policy() -> None:
    """The default policy: 7 days idle, 30 days absolute, 10 s grace."""
    policy = SessionPolicy()
    assert (policy.refresh_ttl, policy.session_ttl, policy.grace) == (604_800, 2_592_000, 10)
