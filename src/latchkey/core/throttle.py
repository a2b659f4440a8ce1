"""Login throttling, pure arithmetic: failure counts and times in, a wait out.

Anti-automation against credential stuffing and brute force without a permanent lockout
(OWASP ASVS v5 6.3.1): nobody can lock a victim out for longer than one window.

Failures are counted per key in a sliding window of ``window`` seconds; older ones are
forgotten. With ``n`` failures in the window:

- ``n <= free`` (default 3): no delay.
- ``n > free``: the next attempt must wait ``min(2 ** (n - free - 1), max_delay)`` seconds
  after the key's LAST failure (1, 2, 4, 8, … s, at most ``max_delay``, default 60 s) and
  never longer than the window, after which that failure is forgotten.
- ``n >= limit`` (the caller's hard cap): wait until the oldest of the last ``limit``
  failures leaves the window.

:func:`wait_seconds` answers the larger of the two waits, rounded up to whole seconds (so at
least 1 when not 0); the caller answers 429 with ``Retry-After``. The wait is computed from
the counts now: failures that leave the window meanwhile can only shorten it. A successful
login forgets the account's failures at once. The counters themselves live in process or in
Redis (latchkey.adapters); all of them answer through :func:`wait_seconds`.
"""

from __future__ import annotations

import math

FREE_FAILURES = 3  # failures per window that cost nothing
MAX_DELAY = 60  # seconds; the growing delay stops doubling here


def growing_delay(count: int, *, free: int, max_delay: float) -> float:
    """The delay after the last failure that ``count`` failures in the window impose."""
    excess = count - free
    if excess <= 0:
        return 0.0
    # 2 ** (excess - 1) s: 1, 2, 4, 8, … (the exponent bounded so a float never overflows).
    return min(2.0 ** min(excess - 1, 1023), float(max_delay))


def wait_seconds(
    now: float,
    *,
    count: int,
    newest: float | None,
    limit_oldest: float | None,
    limit: int,
    window: float,
    free: int,
    max_delay: float,
) -> int:
    """Whole seconds to wait, from the counts of one key (shared by every implementation).

    ``count`` is the number of failures in the window, ``newest`` the time of the last one,
    ``limit_oldest`` the time of the ``limit``-th newest (``None`` when there are fewer).
    """
    # ASVS v5 6.3.1: growing delays, then a hard cap, both bounded by the window.
    wait = 0.0
    if newest is not None:
        delay = min(growing_delay(count, free=free, max_delay=max_delay), window)
        if delay > 0:
            wait = newest + delay - now
    if count >= limit and limit_oldest is not None:
        wait = max(wait, limit_oldest + window - now)
    if wait <= 0:
        return 0
    return max(1, math.ceil(wait))
