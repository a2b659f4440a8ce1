"""Entry point for ASGI servers: ``uvicorn --factory latchkey.web.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from ..settings import Settings
from .app import create_app


def app_from_env() -> Starlette:
    return create_app(Settings())
