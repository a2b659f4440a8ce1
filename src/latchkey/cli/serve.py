"""``latchkey serve`` and ``latchkey migrate``: the only commands that change the schema."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..bootstrap import Container
from ..checks import Listener
from ..ops.logs import configure_logging
from ..settings import Settings
from .check import log_problems
from .common import load_settings, run

log = logging.getLogger("latchkey.serve")
WORKER_HEALTHCHECK = 30  # seconds a worker may take to answer uvicorn's supervisor


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ..web.server import NoDelayHttpToolsProtocol

    settings = load_settings()
    # Every line on stderr in one format, this process's and uvicorn's supervisor's included
    # (uvicorn is given no logging configuration of its own; the workers set the same up).
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)

    async def setup(container: Container) -> bool:
        return await container.accounts.has_users()

    has_users = run(setup, migrate=True)  # keys and schema exist before any worker starts
    log.info(startup_line(settings, args.host, args.port, has_users=has_users))
    # What `latchkey check` would say (with the deploy rules when not on loopback alone).
    log_problems(settings, Listener(host=args.host, port=args.port, workers=args.workers))
    if args.workers > 1:
        # Workers count into files here, and /metrics sums them (prometheus-client's
        # multiprocess mode, chosen at import, hence set before the workers start).
        metrics_dir = Path(tempfile.mkdtemp(prefix="latchkey-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    uvicorn.run(
        "latchkey.web.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=NoDelayHttpToolsProtocol,  # httptools parser; uvicorn picks uvloop itself
        log_level=settings.log_level,
        log_config=None,
        server_header=False,
        # A worker answers the supervisor's health check only once it has started (a fresh
        # interpreter importing the app); on a busy machine that takes more than uvicorn's
        # 5 s, and a worker killed for it would be restarted, and killed, again and again.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK,
    )


def startup_line(settings: Settings, host: str, port: int, *, has_users: bool) -> str:
    """What to do next: the account page's address and, before the first user, how to add
    one. The page is at the issuer (the public URL); the address listened on is named too
    when it differs."""
    page = f"{settings.issuer.rstrip('/')}/account"
    listening = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    where = "" if settings.issuer.rstrip("/") == listening else f" on {listening}"
    line = f"latchkey is starting{where}: sign in at {page}"
    if not has_users:
        line += (
            "; there is no user yet: add the first with "
            "`latchkey user add NAME` (it asks for the password)"
        )
    return line


def cmd_migrate(_args: argparse.Namespace) -> None:
    async def work(container: Container) -> None:
        return None

    run(work, migrate=True)
    print("latchkey: database schema is up to date")
