"""Entry point for ASGI servers: ``uvicorn --factory latchkey.web.asgi:app_from_env``."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

from ..settings import Settings
from .app import create_app


def app_from_env() -> Starlette:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    return create_app(settings)
