"""Entry point for ASGI servers: ``uvicorn --factory latchkey.web.asgi:app_from_env``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from ..ops.logs import configure_logging
from ..settings import Settings
from .app import create_app
from .management import management_listener


def app_from_env() -> Starlette:
    """The app ``latchkey serve`` runs in each worker, with the management listener beside it
    (``LATCHKEY_MANAGEMENT_ADDR``) for as long as the app runs."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    app = create_app(settings)
    if settings.management_addr:
        running = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(started: Starlette) -> AsyncIterator[None]:
            async with running(started), management_listener(app, settings.management_addr):
                yield

        app.router.lifespan_context = lifespan
    return app
