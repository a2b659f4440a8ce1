"""When a remote key set is fresh, stale, too old, or due for a fetch: the policy, no I/O.

:class:`KeySetCache` holds the last good key set of a JWKS URL and decides, on an injected
clock, everything about it except how it is fetched (docs/design.md §3):

- a set is *fresh* for its lifetime (the response's ``max-age``, clamped); the background
  refresh is due at 80 % of it, so a healthy key server is asked before the set goes stale;
- a *stale* set keeps verifying for ``max_stale`` seconds past its lifetime, then no
  longer (RFC 9111 §4.2.4 "max-stale"): a key withdrawn from the JWKS keeps verifying that
  long while the key server cannot be reached — the hard limit bounds that;
- after a failed fetch the next background attempt waits a jittered, doubling backoff
  (``interval`` · 2ⁿ, at most ``max_backoff``);
- a fetch for an unknown key id happens at most once per ``interval`` (the cooldown), so
  tokens naming random key ids cannot make the guard fetch more often than that;
- an outage is one event: :meth:`failed` says when one starts, :meth:`succeeded` when and
  after how long it ends, so a caller logs two lines per outage, not one per request.

The state a request reads is one immutable :class:`Held` swapped whole, so reads take no lock.
Callers serialise the writes (:meth:`attempt`, :meth:`succeeded`, :meth:`failed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .keys import VerificationKey
from .keysets import StaticKeySet

REFRESH_AHEAD = 0.8  # the background refresh is due at this fraction of the set's lifetime
DEFAULT_LIFETIME = 300.0  # a JWKS response without max-age is kept 5 minutes
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Held:
    """The last good key set and the instants that matter for it (Unix seconds)."""

    keys: StaticKeySet
    fetched_at: float
    fresh_until: float  # fetched_at + lifetime
    usable_until: float  # fresh_until + max_stale: no key of it verifies after this


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the last fetches failed, since when, and how many in a row."""

    reason: str
    since: float
    count: int


class KeySetCache:
    """The policy for one remote key set (see the module docstring)."""

    def __init__(self, *, interval: float, max_stale: float, max_backoff: float = 60.0) -> None:
        if not interval > 0 or not max_stale >= 0 or not max_backoff >= interval:
            raise ValueError("need interval > 0, max_stale >= 0 and max_backoff >= interval")
        self.interval = interval
        self.max_stale = max_stale
        self.max_backoff = max_backoff
        self.held: Held | None = None
        self.failure: Failure | None = None
        self.last_attempt: float | None = None
        self.next_refresh = -math.inf  # the first fetch is due at once

    # --- reads (no lock) -------------------------------------------------------------------

    def key(self, kid: str, now: float) -> VerificationKey | None:
        """The key named ``kid`` if the set holding it may still verify at ``now``."""
        held = self.held
        if held is None or now >= held.usable_until:
            return None
        return held.keys.get(kid)

    def usable(self, now: float) -> bool:
        held = self.held
        return held is not None and now < held.usable_until

    def refresh_due(self, now: float) -> bool:
        """Whether the background refresh should run now."""
        return now >= self.next_refresh

    def may_fetch_unknown(self, now: float) -> bool:
        """Whether an unknown key id may trigger a fetch now (the cooldown has passed)."""
        return self.last_attempt is None or now - self.last_attempt >= self.interval

    def settled_unknown(self, now: float) -> bool:
        """Whether an unknown key id is known to be unknown: the set may verify and the last
        fetch succeeded. Otherwise the keys are unavailable, not the token bad."""
        return self.failure is None and self.usable(now)

    def retry_after(self, now: float) -> int:
        """Whole seconds until an unknown key id may trigger the next fetch (at least 1)."""
        if self.last_attempt is None:
            return 1
        return max(1, math.ceil(self.last_attempt + self.interval - now))

    def age(self, now: float) -> float | None:
        """Seconds since the last successful fetch; ``None`` before the first."""
        return None if self.held is None else max(0.0, now - self.held.fetched_at)

    # --- writes (serialised by the caller) -------------------------------------------------

    def attempt(self, now: float) -> None:
        """A fetch starts now."""
        self.last_attempt = now

    def succeeded(self, keys: StaticKeySet, lifetime: float | None, now: float) -> Failure | None:
        """Keep ``keys``, fresh for ``lifetime`` seconds (``None``: 300 s; clamped to
        [interval, 1 day]). Returns the outage that this ends, if one was going on."""
        span = min(max(DEFAULT_LIFETIME if lifetime is None else lifetime, self.interval), DAY)
        self.held = Held(keys, now, now + span, now + span + self.max_stale)
        self.next_refresh = now + max(span * REFRESH_AHEAD, self.interval)
        ended, self.failure = self.failure, None
        return ended

    def failed(self, reason: str, now: float, jitter: float) -> bool:
        """Record a failed fetch; ``jitter`` in [0, 1) spreads the next attempt over the
        second half of the backoff. Returns whether an outage starts with this failure."""
        previous = self.failure
        count = 1 if previous is None else previous.count + 1
        self.failure = Failure(reason, now if previous is None else previous.since, count)
        backoff = min(self.interval * 2.0 ** min(count - 1, 32), self.max_backoff)
        self.next_refresh = now + max(self.interval, backoff * (0.5 + jitter / 2))
        return previous is None
