"""Per-user revocation epochs: ending every session of a user costs the same at any count.

"Revoke everything this user has" (logout-all, a password change, disable, delete,
``latchkey sessions revoke --user``) is one row: the user's **epoch** goes up by one and the
instant is recorded. A session belongs to the epoch its user had when it was opened; one of an
older epoch is revoked, whatever the number of such sessions (docs/design.md §2, §3).

Access tokens are checked offline, so the guards learn the instant instead: a
:class:`UserCutoff` refuses every access token of the user issued before it, except those of
the one session a password change keeps. ``iat`` is in whole seconds (RFC 7519 §2
NumericDate, as issued), so a token issued in the second of the cutoff but after it has the
same ``iat`` as one issued just before it. The rule stays exact because the service never
issues an access token to a session opened after a cutoff before :func:`first_issue_at`:

- issued before the cutoff ``T``: ``iat = floor(t) <= t < T``, refused;
- issued from ``ceil(T)`` on: ``iat >= ceil(T) >= T``, accepted.

Only ``sub``, ``sid`` and ``iat`` are read, all of them signed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserCutoff:
    """Access tokens of one user issued before ``not_before`` are refused, except those of
    ``exempt_sid`` (the session that changed the password, which keeps working)."""

    not_before: float
    exempt_sid: str | None = None

    def refuses(self, sid: object, iat: float) -> bool:
        return iat < self.not_before and sid != self.exempt_sid

    def merged(self, other: UserCutoff) -> UserCutoff:
        """The cutoff that holds once both have happened: the later one; of two at the same
        instant, an exemption only if both make it."""
        if other.not_before != self.not_before:
            return other if other.not_before > self.not_before else self
        if other.exempt_sid == self.exempt_sid:
            return self
        return UserCutoff(self.not_before)


def first_issue_at(not_before: float | None) -> float:
    """The earliest instant an access token may be issued to a session opened after the
    cutoff ``not_before`` so that the cutoff does not refuse it: the next whole second."""
    return -math.inf if not_before is None else float(math.ceil(not_before))


@dataclass(frozen=True, slots=True)
class EpochRevocation:
    """One mass revocation of a user's sessions: the sessions of epoch ``epoch - 1`` ended at
    ``revoked_at`` for ``reason``; ``kept_sid`` moved on to ``epoch`` (a password change from
    that session)."""

    user_id: str
    epoch: int
    revoked_at: float
    reason: str
    kept_sid: str | None = None
    sessions: int = 0  # how many sessions were open (the kept one not counted)

    @property
    def cutoff(self) -> UserCutoff:
        return UserCutoff(self.revoked_at, self.kept_sid)
