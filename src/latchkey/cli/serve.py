"""``latchkey serve`` and ``latchkey migrate``: the only commands that change the schema."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..bootstrap import Container
from .common import load_settings, run


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ..web.server import NoDelayHttpToolsProtocol

    settings = load_settings()

    async def setup(container: Container) -> None:
        return None

    run(setup, migrate=True)  # keys and schema exist before any worker starts
    print(
        f"latchkey: serving {settings.issuer} on http://{args.host}:{args.port} "
        f"(database {settings.database_url})",
        file=sys.stderr,
    )
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
        server_header=False,
    )


def cmd_migrate(_args: argparse.Namespace) -> None:
    async def work(container: Container) -> None:
        return None

    run(work, migrate=True)
    print("latchkey: database schema is up to date")
