"""Protecting other APIs with latchkey access tokens."""

from .asgi import BearerAuthMiddleware
from .starlette import require_token

__all__ = ["BearerAuthMiddleware", "require_token"]
