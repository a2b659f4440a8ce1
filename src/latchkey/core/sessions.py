"""Sessions and the refresh-token rules of docs/design.md §2, as pure functions of data and time.

A session row holds O(1) state however often it rotates: the current generation, the
hashes of the current and the previous token, the nonce that derived the current token from
the previous one, when that happened, and two marks that bound when older generations
stopped being current (:func:`advance_marks`). The store performs the rotation as one
conditional write (compare-and-swap on ``generation`` and ``current_hash``); when that write
matches nothing, :func:`classify_failed_rotation` decides what the presented token was.

The rule for a genuine token that is no longer current (docs/sessions.md "Stragglers and
reuse"): one that stopped being current ``grace`` seconds ago or less is never taken for
theft — the immediately previous token gets the same successor, an older one is refused
(:attr:`Outcome.STALE`) and nothing is revoked; one the row proves stopped being current
longer ago than that is reuse, and revokes the session (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from .refresh import NONCE_BYTES, RefreshToken, RefreshTokenCodec


class RevocationReason(enum.StrEnum):
    LOGOUT = "logout"  # the session's own logout
    LOGOUT_ALL = "logout_all"  # the user ended every session
    REVOKED_BY_USER = "revoked_by_user"  # ended from another of the user's sessions
    PASSWORD_CHANGED = "password_changed"  # every other session of the user
    REUSE_DETECTED = "reuse_detected"  # an old refresh token came back (docs/design.md §2)
    ADMIN = "admin"  # `latchkey sessions revoke`
    USER_DISABLED = "user_disabled"
    USER_DELETED = "user_deleted"
    SESSION_LIMIT = "session_limit"  # a login past LATCHKEY_MAX_SESSIONS_PER_USER: the oldest


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    refresh_ttl: int = 7 * 24 * 3600  # idle expiry: time allowed between two refreshes
    session_ttl: int = 30 * 24 * 3600  # absolute expiry: never extended by rotation
    grace: int = 10  # seconds in which the previous token gets the same successor; 0 = off


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user_id: str
    generation: int
    current_hash: bytes
    previous_hash: bytes | None
    rotation_nonce: bytes | None
    rotated_at: float | None
    created_at: float
    last_used_at: float
    idle_expires_at: float
    absolute_expires_at: float
    revoked_at: float | None = None
    revoked_reason: str | None = None
    scope: str = ""
    user_agent: str | None = None
    address: str | None = None
    # Every generation below ``settled_generation`` stopped being current more than the grace
    # window ago; every generation below ``mark_generation`` stopped being current at or
    # before ``mark_at`` (None: no such generation yet). See :func:`advance_marks`.
    settled_generation: int = 0
    mark_generation: int = 0
    mark_at: float | None = None
    epoch: int = 0  # the user's epoch when it was opened (core/epochs.py)
    # The last proof of the user's password in this session: the login, or a later
    # re-authentication. ``None`` (a row older than the column): the login.
    authenticated_at: float | None = None

    def expires_at(self) -> float:
        return min(self.idle_expires_at, self.absolute_expires_at)

    @property
    def auth_time(self) -> int:
        """The access tokens' ``auth_time`` (RFC 9068 §2.2.1): a refresh keeps it, since
        presenting a refresh token proves nothing about the person (RFC 9470 §3)."""
        return int(self.created_at if self.authenticated_at is None else self.authenticated_at)

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at()


def new_session(
    token: RefreshToken,
    *,
    user_id: str,
    scope: str,
    now: float,
    policy: SessionPolicy,
    user_agent: str | None = None,
    address: str | None = None,
    epoch: int = 0,
) -> Session:
    absolute = now + policy.session_ttl
    return Session(
        sid=token.sid,
        user_id=user_id,
        generation=token.generation,
        current_hash=token.digest,
        previous_hash=None,
        rotation_nonce=None,
        rotated_at=None,
        created_at=now,
        last_used_at=now,
        idle_expires_at=min(now + policy.refresh_ttl, absolute),
        absolute_expires_at=absolute,
        scope=scope,
        user_agent=user_agent,
        address=address,
        epoch=epoch,
        authenticated_at=now,
    )


@dataclass(frozen=True, slots=True)
class Rotation:
    """The conditional write: applies only if the row still holds ``presented``."""

    sid: str
    expected_generation: int
    expected_hash: bytes
    new_generation: int
    new_hash: bytes
    nonce: bytes
    now: float
    idle_expires_at: float  # capped again by absolute_expires_at when read
    grace: float  # the window the marks are kept for (advance_marks)


@dataclass(frozen=True, slots=True)
class Marks:
    settled_generation: int
    mark_generation: int
    mark_at: float | None


def advance_marks(session: Session, now: float, grace: float) -> Marks:
    """The marks a rotation at ``now`` writes, from the row before it (the store's conditional
    write computes the same in SQL: statements.ROTATE).

    With ``c`` the generation being rotated away and ``rotated_at`` when ``c - 1`` was: if the
    mark is older than the window (``mark_at < now - grace``) or unset, everything below it is
    settled and the mark moves to ``(c, rotated_at)`` — every generation below ``c`` stopped
    being current by ``rotated_at``. Otherwise nothing changes. So every generation below
    ``settled_generation`` stopped being current more than ``grace`` before any later instant,
    and the mark is never more than one window behind the rotations that follow it."""
    if session.mark_at is not None and not session.mark_at < now - grace:
        return Marks(session.settled_generation, session.mark_generation, session.mark_at)
    return Marks(session.mark_generation, session.generation, session.rotated_at)


def stopped_by(session: Session, generation: int) -> float | None:
    """A time by which ``generation`` (older than the current one) had stopped being current,
    from the row's marks; None if the row cannot tell (then it is not taken for theft)."""
    if generation < session.mark_generation:
        return session.mark_at
    return session.rotated_at


def next_rotation(
    presented: RefreshToken, codec: RefreshTokenCodec, *, now: float, policy: SessionPolicy
) -> tuple[Rotation, RefreshToken]:
    """The conditional write that rotates ``presented``, and the token it would issue: a
    fresh nonce derives the successor, whose idle expiry starts now."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    successor = codec.successor(presented, nonce)
    rotation = Rotation(
        sid=presented.sid,
        expected_generation=presented.generation,
        expected_hash=presented.digest,
        new_generation=successor.generation,
        new_hash=successor.digest,
        nonce=nonce,
        now=now,
        idle_expires_at=now + policy.refresh_ttl,
        grace=policy.grace,
    )
    return rotation, successor


class Outcome(enum.Enum):
    GRACE_REPLAY = "grace_replay"  # the immediately previous token, within the window
    STALE = "stale"  # an older genuine token, current within the window: refuse, revoke nothing
    REUSE = "reuse"  # a genuine token no longer current for longer: revoke the whole session
    REVOKED = "revoked"
    EXPIRED = "expired"
    INVALID = "invalid"  # unknown session or a token that does not match its generation


def classify_failed_rotation(
    session: Session | None, presented: RefreshToken, now: float, policy: SessionPolicy
) -> Outcome:
    """Why the compare-and-swap for ``presented`` matched no row (docs/design.md §2)."""
    if session is None:
        return Outcome.INVALID
    if session.revoked_at is not None:
        return Outcome.REVOKED
    if presented.generation > session.generation:
        return Outcome.INVALID
    if presented.generation == session.generation:
        if presented.digest != session.current_hash:
            return Outcome.INVALID
        return Outcome.EXPIRED if now >= session.expires_at() else Outcome.INVALID
    # An older generation, authenticated by its MAC: genuine, but no longer current.
    expired = now >= session.expires_at()
    if presented.generation == session.generation - 1:
        if session.previous_hash != presented.digest:
            return Outcome.REUSE  # genuine MAC, yet not this chain's previous token
        if (
            policy.grace > 0
            and session.rotated_at is not None
            and now - session.rotated_at <= policy.grace
            and session.rotation_nonce is not None
        ):
            return Outcome.EXPIRED if expired else Outcome.GRACE_REPLAY
    if presented.generation >= session.settled_generation and policy.grace > 0:
        stopped = stopped_by(session, presented.generation)
        if stopped is None or now - stopped <= policy.grace:
            # It may have been current within the window: a straggler, never theft.
            return Outcome.EXPIRED if expired else Outcome.STALE
    return Outcome.REUSE
