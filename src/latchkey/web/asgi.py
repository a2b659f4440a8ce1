"""Entry point for ASGI servers: ``uvicorn --factory latchkey.web.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from ..ops.logs import configure_logging
from ..settings import Settings
from .app import create_app


def app_from_env() -> Starlette:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    return create_app(settings)
