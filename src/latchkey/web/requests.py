"""What every handler reads off a request: the container of services, and who the client is."""

from __future__ import annotations

from starlette.requests import Request

from ..bootstrap import Container
from ..services import ClientInfo


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def client_of(request: Request) -> ClientInfo:
    return ClientInfo(
        user_agent=request.headers.get("user-agent"),
        address=request.client.host if request.client else None,
    )
