"""The management listener (``LATCHKEY_MANAGEMENT_ADDR``, loopback by default): ``/metrics``
and ``/readyz`` for the operator, on a port of their own, so that the public port answers 404
on ``/metrics`` (as Keycloak's management interface keeps them off the public listener).

Each server process (worker) runs it in its own event loop beside the public app. The socket
is bound with ``SO_REUSEPORT``, so the workers of one ``latchkey serve --workers N`` share the
port; ``/metrics`` then adds up every worker's samples (prometheus-client's multiprocess mode)
whichever worker answers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ..settings import split_host_port
from .errors import on_http_error
from .ops import OPS_ROUTES

log = logging.getLogger("latchkey.web")


def management_app(public: Starlette) -> Starlette:
    """``/metrics`` and ``/readyz`` over the state of the public app (same container)."""
    app = Starlette(routes=OPS_ROUTES, exception_handlers={HTTPException: on_http_error})
    app.state.container = public.state.container
    app.state.metrics = public.state.metrics
    app.state.redis_ping = public.state.redis_ping
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # the workers of one serve share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def management_listener(public: Starlette, address: str) -> AsyncIterator[None]:
    """Serve :func:`management_app` on ``address`` (HOST:PORT) while the context is open. A
    port that cannot be had is logged as an error; the public service runs on without it."""
    host, port = split_host_port(address) or ("127.0.0.1", 0)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        log.error(
            "management listener not started: cannot listen on %s (%s); /metrics and "
            "/readyz are not served (LATCHKEY_MANAGEMENT_ADDR)",
            address,
            exc.strerror,
        )
        yield
        return
    config = uvicorn.Config(
        management_app(public),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    log.info("management listener on http://%s (/metrics, /readyz)", address)
    try:
        yield
    finally:
        await server.shutdown(sockets=[sock])
