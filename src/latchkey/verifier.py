"""The public :class:`Verifier`: the core's (pure, no I/O), plus keys fetched from a JWKS URL.

The fetching is an adapter (adapters/remote_jwks.py), so it is joined here, above the core:
``latchkey.Verifier.from_jwks_url(...)`` works while ``latchkey.core`` imports no network code.
"""

from __future__ import annotations

from typing import Any

from .core.clock import SystemClock
from .core.verifier import Verifier as CoreVerifier


class Verifier(CoreVerifier):
    __doc__ = CoreVerifier.__doc__

    @classmethod
    def from_jwks_url(
        cls,
        url: str,
        *,
        min_refetch_interval: float = 5.0,
        timeout: float = 5.0,
        max_stale: float = 6 * 3600.0,
        refresh_deadline: float = 1.0,
        **options: Any,
    ) -> Verifier:
        """Keys from a JWKS URL, kept for the response's max-age and refreshed in the
        background before it passes; a stale set keeps verifying for ``max_stale`` seconds
        more while the URL fails. An unknown ``kid`` causes one fetch, at most once per
        ``min_refetch_interval``, waited for at most ``refresh_deadline`` seconds. See
        docs/frameworks.md "The keys" and :meth:`warm_up`."""
        # Loaded on use: importing latchkey (and its core) loads no network code.
        from .adapters.remote_jwks import RemoteJWKS

        clock = options.get("clock") or SystemClock()
        source = RemoteJWKS(
            url,
            clock=clock,
            min_refetch_interval=min_refetch_interval,
            timeout=timeout,
            max_stale=max_stale,
            refresh_deadline=refresh_deadline,
        )
        return cls(source, **options)
