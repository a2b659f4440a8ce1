"""Keys from a JWKS URL (stdlib only): fetched once, cached, refetched on an unknown ``kid``
no more often than ``min_refetch_interval`` — never once per request."""

from __future__ import annotations

import json
import threading
import urllib.request
from urllib.error import URLError

from .core.clock import Clock
from .core.errors import ConfigurationError
from .core.keys import VerificationKey
from .core.keysets import StaticKeySet

MAX_JWKS_BYTES = 256 * 1024


class RemoteJWKS:
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
        self.fetches = 0

    def _fetch(self) -> None:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ConfigurationError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ConfigurationError("JWKS document is not an object")
        self._keys = StaticKeySet.from_jwks(document)

    def get(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            now = self._clock.now()
            if key is None and (
                self._fetched_at is None or now - self._fetched_at >= self._interval
            ):
                self._fetched_at = now
                self.fetches += 1
                try:
                    self._fetch()
                except (OSError, URLError, ValueError, ConfigurationError):
                    return None  # keep the keys we had; the token is rejected
                key = self._keys.get(kid)
        return key
