"""Prometheus metrics: the service's events as counters, HTTP latency as a histogram.

Each :class:`Metrics` owns its own registry, so several apps can live in one process (tests).
Under ``uvicorn --workers N`` set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before
the server starts: every worker then writes its samples there and ``/metrics`` sums them all.
"""

from __future__ import annotations

import os
import time
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
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .core.sessions import RevocationReason
from .events import RefreshOutcome

__all__ = ["Metrics", "MetricsMiddleware", "PrometheusEvents", "metrics_response"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
_OUTCOMES: tuple[str, ...] = get_args(RefreshOutcome)  # stays in step with events.py
# Any other method a client invents is counted as "other": labels stay a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Every latchkey metric, registered in one registry that :func:`metrics_response`
    exposes."""

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
    """The service's :class:`~latchkey.events.Events`, counted in Prometheus."""

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


def metrics_response(metrics: Metrics) -> Response:
    """The Prometheus text exposition of ``metrics``."""
    return Response(
        generate_latest(metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request (``/auth/sessions/{sid}``),
    read from ``scope["route"]``, which Starlette's router sets on the shared scope."""
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return UNMATCHED
    # Inside a Mount, root_path has grown by the mount's prefix; app_root_path has not.
    root_path: str = scope.get("root_path", "")
    prefix = root_path[len(scope.get("app_root_path", "")) :]
    if isinstance(route, Mount):
        return prefix.rstrip("/") + "/{path}"
    return prefix.rstrip("/") + path_format or "/"


class MetricsMiddleware:
    """Observes ``latchkey_http_request_duration_seconds`` for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 500  # if the app raises before it responds, the server answers 500
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.http_duration.labels(
                method=method, route=route_template(scope), status=str(status)
            ).observe(time.perf_counter() - start)
