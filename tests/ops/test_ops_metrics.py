"""Prometheus metrics: event counters, the latency histogram by route template, exposition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from latchkey.ops.metrics import Metrics, PrometheusEvents
from latchkey.web.middleware import MetricsMiddleware
from latchkey.web.ops import OPS_ROUTES

HISTOGRAM = "latchkey_http_request_duration_seconds"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["id"])


async def boom(_request: Request) -> Response:
    raise RuntimeError("boom")


def tiny_app(metrics: Metrics) -> Starlette:
    app = Starlette(
        routes=[
            Route("/items/{id}", item, methods=["GET"]),
            Route("/boom", boom),
            Mount("/api", routes=[Route("/items/{id}", item)]),
            *OPS_ROUTES,
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )
    app.state.metrics = metrics
    return app


def client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def test_events_move_the_counters() -> None:
    """Each PrometheusEvents call adds one to its counter, and reuse is also counted apart."""
    metrics = Metrics()
    events = PrometheusEvents(metrics)

    events.login(ok=True)
    events.login(ok=True)
    events.login(ok=False)
    events.refresh("rotated")
    events.refresh("reused")
    events.revoked("reuse_detected")

    assert sample(metrics, "latchkey_logins_total", result="ok") == 2
    assert sample(metrics, "latchkey_logins_total", result="failed") == 1
    assert sample(metrics, "latchkey_refreshes_total", outcome="rotated") == 1
    assert sample(metrics, "latchkey_refreshes_total", outcome="reused") == 1
    assert sample(metrics, "latchkey_refreshes_total", outcome="grace") == 0
    assert sample(metrics, "latchkey_reuse_detections_total") == 1
    assert sample(metrics, "latchkey_revocations_total", reason="reuse_detected") == 1
    assert sample(metrics, "latchkey_revocations_total", reason="logout") == 0


def test_two_metrics_instances_live_in_one_process() -> None:
    """Each Metrics has its own registry: a second one raises no duplicate-timeseries error."""
    first, second = Metrics(), Metrics()
    PrometheusEvents(first).login(ok=True)
    assert sample(first, "latchkey_logins_total", result="ok") == 1
    assert sample(second, "latchkey_logins_total", result="ok") == 0


async def test_histogram_is_labelled_with_the_route_template() -> None:
    """A request to /items/42 is observed under route "/items/{id}", never the raw path."""
    metrics = Metrics()
    async with client(tiny_app(metrics)) as c:
        assert (await c.get("/items/42")).status_code == 200
        await c.get("/items/43")

    labels = {"method": "GET", "route": "/items/{id}", "status": "200"}
    assert sample(metrics, f"{HISTOGRAM}_count", **labels) == 2
    assert sample(metrics, f"{HISTOGRAM}_count", **{**labels, "route": "/items/42"}) is None


async def test_mounted_routes_keep_their_prefix() -> None:
    """A route inside a Mount is labelled with the mount prefix plus its template."""
    metrics = Metrics()
    async with client(tiny_app(metrics)) as c:
        await c.get("/api/items/7")

    labels = {"method": "GET", "route": "/api/items/{id}", "status": "200"}
    assert sample(metrics, f"{HISTOGRAM}_count", **labels) == 1


async def test_unknown_paths_odd_methods_and_crashes_have_bounded_labels() -> None:
    """404s are "unmatched", unknown methods "other", and a crashing handler counts as 500."""
    metrics = Metrics()
    async with client(tiny_app(metrics)) as c:
        assert (await c.get("/no/such/path")).status_code == 404
        assert (await c.request("BREW", "/items/1")).status_code == 405
        assert (await c.get("/boom")).status_code == 500

    count = f"{HISTOGRAM}_count"
    assert sample(metrics, count, method="GET", route="unmatched", status="404") == 1
    assert sample(metrics, count, method="other", route="/items/{id}", status="405") == 1
    assert sample(metrics, count, method="GET", route="/boom", status="500") == 1


async def test_exposition_parses_as_prometheus_text() -> None:
    """GET /metrics serves text that Prometheus' own parser reads, with every latchkey family."""
    metrics = Metrics()
    PrometheusEvents(metrics).login(ok=False)
    async with client(tiny_app(metrics)) as c:
        await c.get("/items/1")
        response = await c.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=1.0.0")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {
        "latchkey_logins",
        "latchkey_refreshes",
        "latchkey_reuse_detections",
        "latchkey_revocations",
        HISTOGRAM,
    } <= families.keys()
    assert families[HISTOGRAM].type == "histogram"
    failed = [s for s in families["latchkey_logins"].samples if s.labels == {"result": "failed"}]
    assert failed[0].value == 1


_WORKER = """
from latchkey.ops.metrics import Metrics, PrometheusEvents
PrometheusEvents(Metrics()).login(ok=True)
"""


def test_multiprocess_mode_sums_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, /metrics adds up the samples of all workers."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    for _worker in range(2):
        subprocess.run([sys.executable, "-c", _WORKER], check=True)

    metrics = Metrics()
    assert metrics.multiprocess
    assert sample(metrics, "latchkey_logins_total", result="ok") == 2
