"""Protecting other APIs with latchkey access tokens."""

from .asgi import BearerAuthMiddleware
from .starlette import Refused, exception_handlers, require_token

__all__ = ["BearerAuthMiddleware", "Refused", "exception_handlers", "require_token"]
