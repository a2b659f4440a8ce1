"""The service's own ASGI middleware: a request id for every log line, and HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..ops.logs import request_id_var
from ..ops.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Any other method a client invents is counted as "other": labels stay a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestIdMiddleware:
    """Gives each HTTP request an id: the client's ``X-Request-ID`` when it is a sane value
    (at most 64 of ``A-Z a-z 0-9 . _ -``), else a fresh uuid4. Log lines made during the
    request carry it; the response returns it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = Headers(scope=scope).get(REQUEST_ID_HEADER)
        if request_id is None or not _SANE_REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        token = request_id_var.set(request_id)
        await self.app(scope, receive, send_with_id)
        # Reset only after a normal return: when the app raises, Starlette's
        # ServerErrorMiddleware (outside every user middleware) logs the error after this
        # frame, and that line should still carry the id. An ASGI server runs each request
        # in its own task, so the value cannot reach another request.
        request_id_var.reset(token)


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
