"""The guards' key-set metrics, for the application's own Prometheus registry.

When prometheus-client is installed, every live :class:`~latchkey.adapters.remote_jwks.
RemoteJWKS` shows in the default registry (what ``prometheus_client.make_asgi_app()`` or
``generate_latest()`` expose) as:

- ``latchkey_guard_key_set_age_seconds{url}``: seconds since the key set was last fetched
  (absent before the first success);
- ``latchkey_guard_key_set_fetch_failures_total{url, reason}``: failed fetches, ``reason``
  one of ``timeout``, ``connection``, ``http_status``, ``invalid_document``.

The URL label is redacted (no credentials, no query). Sources are held weakly: a verifier
that is dropped stops being reported.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Protocol


class Reported(Protocol):
    """What a key source tells the collector."""

    where: str

    def age(self) -> float | None: ...

    def failure_counts(self) -> Mapping[str, int]: ...


_sources: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False
_lock = threading.Lock()


def track(source: Reported) -> None:
    """Report ``source`` from now on (registers the collector once per process)."""
    global _registered
    with _lock:
        _sources.add(source)
        if _registered:
            return
        _registered = True
    try:
        from prometheus_client import REGISTRY
    except ImportError:  # pragma: no cover - prometheus-client is optional for a guard
        return
    REGISTRY.register(_Collector())


class _Collector:
    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        age = GaugeMetricFamily(
            "latchkey_guard_key_set_age_seconds",
            "Seconds since the guard last fetched the key set.",
            labels=["url"],
        )
        failures = CounterMetricFamily(
            "latchkey_guard_key_set_fetch_failures",
            "Failed fetches of the key set, by reason.",
            labels=["url", "reason"],
        )
        for source in list(_sources):
            seconds = source.age()
            if seconds is not None:
                age.add_metric([source.where], seconds)
            for reason, count in source.failure_counts().items():
                failures.add_metric([source.where, reason], count)
        yield age
        yield failures
