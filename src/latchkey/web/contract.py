"""What each route takes and answers, declared next to its handler; /openapi.json is made from
these declarations (web/openapi.py), so the document and the server cannot drift apart.

A handler is declared with :func:`operation` and put in a route table with :func:`route`::

    @operation("GET", "Who the bearer token belongs to", security=BEARER,
               answers={200: Answer("Identity", MeResponse)})
    async def me(request: Request) -> Response: ...

    ROUTES = [route("/auth/me", me)]

Answers every route of a kind can give are added by the generator, not written again: a body
brings 400 (malformed) and 413 (too large); a bearer token brings 401 ``invalid_token``; a
state-changing route under the refresh cookie's path brings the CSRF header and 403
``access_denied`` (web/csrf.py); a route that reaches the database brings 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import Reply
from .errors import NO_STORE

__all__ = [
    "BEARER",
    "Answer",
    "Handler",
    "Header",
    "Operation",
    "declared",
    "operation",
    "respond",
    "route",
]

Handler = Callable[[Request], Awaitable[Response]]
Method = Literal["GET", "POST", "DELETE"]
Security = Sequence[Mapping[str, Sequence[str]]]

BEARER: Security = ({"bearer": ()},)  # RFC 6750 §2.1: Authorization: Bearer <access token>


@dataclass(frozen=True)
class Header:
    """A request or response header: its name, what it means, and its string schema."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """One status code's answer: a JSON body of ``model``, a body of another ``media_type``
    (``schema`` when it is JSON without a model), or no body at all."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = None
    schema: Mapping[str, Any] | None = None
    headers: Sequence[Header] = ()
    alternatives: Sequence[type[BaseModel]] = ()  # the body is one of these models


@dataclass(frozen=True)
class Operation:
    """A route's contract: method, summary, request body, parameters, security, answers."""

    method: Method
    summary: str
    answers: Mapping[int, Answer]
    description: str = ""
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    body_required: bool = True
    security: Security | None = None  # None: no authentication at all
    headers: Sequence[Header] = ()
    path_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reaches_store: bool = True  # the database (or Redis) may be down: 503


_DECLARATIONS: dict[Handler, Operation] = {}


def operation(
    method: Method, summary: str, *, answers: Mapping[int, Answer], **details: Any
) -> Callable[[Handler], Handler]:
    """Declare what the decorated handler takes and answers (see :class:`Operation`)."""
    declared_operation = Operation(method, summary, answers, **details)

    def declare(handler: Handler) -> Handler:
        _DECLARATIONS[handler] = declared_operation
        return handler

    return declare


def declared(handler: Callable[..., Any]) -> Operation:
    """The operation ``handler`` was declared with; a route without one is a bug."""
    try:
        return _DECLARATIONS[handler]
    except KeyError:
        name = getattr(handler, "__qualname__", repr(handler))
        raise LookupError(f"{name} has no @operation declaration") from None


def route(path: str, handler: Handler) -> Route:
    """The Starlette route of a declared handler, with the method it was declared with."""
    return Route(path, handler, methods=[declared(handler).method])


def respond(
    body: Reply, status_code: int = 200, headers: Mapping[str, str] = NO_STORE
) -> JSONResponse:
    """``body`` as JSON, serialised through its model: the shape the document gives it."""
    content = body.model_dump(mode="json", exclude_none=body.omit_none)
    return JSONResponse(content, status_code=status_code, headers=dict(headers))
