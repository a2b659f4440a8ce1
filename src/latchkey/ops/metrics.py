"""Prometheus metrics: the service's events as counters, HTTP latency as a histogram.

Each :class:`Metrics` owns its own registry, so several apps can live in one process (tests).
Under ``uvicorn --workers N`` set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before
the server starts: every worker then writes its samples there and ``/metrics`` sums them all.
"""

from __future__ import annotations

import os
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ..core.sessions import RevocationReason
from .events import RefreshOutcome

__all__ = ["Metrics", "PrometheusEvents", "exposition"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OUTCOMES: tuple[str, ...] = get_args(RefreshOutcome)  # stays in step with events.py


class Metrics:
    """Every latchkey metric, registered in one registry that :func:`exposition` renders."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:
            # Samples go to the workers' shared files; the metric objects are registered
            # nowhere, and the exposition registry reads the files back.
            target: CollectorRegistry | None = None
            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            target = self.registry = CollectorRegistry()
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

        self.logins = Counter(
            "latchkey_logins",
            "Login attempts by result.",
            ["result"],
            registry=target,
        )
        self.refreshes = Counter(
            "latchkey_refreshes",
            "Refresh-token presentations by outcome.",
            ["outcome"],
            registry=target,
        )
        self.reuse_detections = Counter(
            "latchkey_reuse_detections",
            "Refresh tokens presented again after rotation: a session revoked as stolen.",
            registry=target,
        )
        self.revocations = Counter(
            "latchkey_revocations",
            "Sessions revoked, by reason.",
            ["reason"],
            registry=target,
        )
        self.http_duration = Histogram(
            "latchkey_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["method", "route", "status"],
            registry=target,
        )
        # Series that exist from the start read 0 instead of missing, so rate() and
        # alerts work before the first event.
        for result in ("ok", "failed"):
            self.logins.labels(result=result)
        for outcome in _OUTCOMES:
            self.refreshes.labels(outcome=outcome)
        for reason in RevocationReason:
            self.revocations.labels(reason=reason.value)


class PrometheusEvents:
    """The service's :class:`~latchkey.ops.events.Events`, counted in Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def login(self, ok: bool) -> None:
        self.metrics.logins.labels(result="ok" if ok else "failed").inc()

    def refresh(self, outcome: RefreshOutcome) -> None:
        self.metrics.refreshes.labels(outcome=outcome).inc()
        if outcome == "reused":
            self.metrics.reuse_detections.inc()

    def revoked(self, reason: str) -> None:
        self.metrics.revocations.labels(reason=str(reason)).inc()


def exposition(metrics: Metrics) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``metrics``, and its media type."""
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
