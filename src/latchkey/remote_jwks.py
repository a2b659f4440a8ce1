"""Keys from a JWKS URL (stdlib only).

Fetched once, then kept for as long as the server's ``Cache-Control: max-age`` says (default
5 minutes, clamped to [``min_refetch_interval``, 1 day]); refetched early when a token names
an unknown ``kid`` — at most once per ``min_refetch_interval``, never once per request. When
a refetch fails, the keys already held stay in use and the fetch is retried after the
interval.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import urllib.request
from urllib.error import URLError

from .core.clock import Clock
from .core.errors import ConfigurationError
from .core.keys import VerificationKey
from .core.keysets import StaticKeySet

MAX_JWKS_BYTES = 256 * 1024
DEFAULT_MAX_AGE = 300.0
MAX_MAX_AGE = 86400.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


def cache_lifetime(cache_control: str | None) -> float | None:
    """Seconds a response may be kept after RFC 9111 §5.2.2; ``None`` if not said."""
    if not cache_control:
        return None
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match[1]) if match else None


class RemoteJWKS:
    """A :class:`~latchkey.core.keysets.KeySource` backed by a JWKS URL; thread-safe."""

    def __init__(
        self, url: str, *, clock: Clock, min_refetch_interval: float = 5.0, timeout: float = 5.0
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("the JWKS URL must be http(s)")
        self.url = url
        self._clock = clock
        self._interval = min_refetch_interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys = StaticKeySet([])
        self._fetched_at: float | None = None
        self._fresh_until = float("-inf")
        self.fetches = 0

    def _fetch(self, now: float) -> None:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
            body = response.read(MAX_JWKS_BYTES + 1)
            max_age = cache_lifetime(response.headers.get("Cache-Control"))
        if len(body) > MAX_JWKS_BYTES:
            raise ConfigurationError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ConfigurationError("JWKS document is not an object")
        self._keys = StaticKeySet.from_jwks(document)
        lifetime = DEFAULT_MAX_AGE if max_age is None else max_age
        self._fresh_until = now + min(max(lifetime, self._interval), MAX_MAX_AGE)

    def get(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        now = self._clock.now()
        if key is not None and now < self._fresh_until:
            return key
        with self._lock:
            now = self._clock.now()
            stale = now >= self._fresh_until
            if (self._keys.get(kid) is None or stale) and (
                self._fetched_at is None or now - self._fetched_at >= self._interval
            ):
                self._fetched_at = now
                self.fetches += 1
                # On failure keep the keys we had; an unknown kid stays unknown.
                with contextlib.suppress(OSError, URLError, ValueError, ConfigurationError):
                    self._fetch(now)
            return self._keys.get(kid)
