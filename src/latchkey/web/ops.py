"""Endpoints for operators: readiness (``/readyz``) and Prometheus metrics (``/metrics``),
on the management listener; ``/readyz`` on the public port too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..ops.metrics import Metrics, exposition
from .bodies import Check, Readiness
from .contract import Answer, operation, respond, route
from .errors import NO_STORE
from .openapi import RETRY_AFTER

log = logging.getLogger("latchkey.web")

CHECK_TIMEOUT = 2.0  # seconds each dependency gets to answer before it counts as down

Probe = Callable[[], Awaitable[None]]


async def _check(name: str, probe: Probe) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe()
    except TimeoutError:
        log.warning("readiness check timed out", extra={"check": name})
        return "timeout"
    except Exception as exc:  # any failure of a dependency means "not ready", not a 500
        log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
        return "unavailable"
    return "ok"


@operation(
    "GET",
    "Readiness: the database (and Redis when configured) answer",
    answers={
        200: Answer("Ready", Readiness),
        503: Answer("A dependency is unavailable", Readiness, headers=(RETRY_AFTER,)),
    },
    reaches_store=False,  # a fault is its 503, declared above
)
async def readyz(request: Request) -> Response:
    """200 when the database (and Redis, when configured) answer; else 503 + Retry-After."""
    state = request.app.state
    redis_ping: Probe | None = getattr(state, "redis_ping", None)
    names = ["database"]
    probes: list[Awaitable[Check]] = [_check("database", state.container.store.ping)]
    if redis_ping is not None:
        names.append("redis")
        probes.append(_check("redis", redis_ping))
    checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
    checks.setdefault("redis", "not configured")

    if all(result in ("ok", "not configured") for result in checks.values()):
        return respond(Readiness(status="ready", checks=checks))
    return respond(
        Readiness(status="unavailable", checks=checks),
        status_code=503,
        headers={**NO_STORE, "Retry-After": "1"},
    )


@operation(
    "GET",
    "Prometheus metrics (text exposition format)",
    answers={200: Answer("Metrics", media_type="text/plain")},
    reaches_store=False,
)
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    body, media_type = exposition(metrics)
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


# The management listener serves both (web/management.py); the public port only /readyz,
# for load balancers: /metrics is for the operator, not the Internet (404 there).
PUBLIC_OPS_ROUTES: list[BaseRoute] = [route("/readyz", readyz)]
OPS_ROUTES: list[BaseRoute] = [*PUBLIC_OPS_ROUTES, route("/metrics", metrics_endpoint)]
