"""Running the app under uvicorn: its compiled HTTP parser (httptools) on uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """``TCP_NODELAY`` on an accepted connection.

    With ``--workers N`` the listening socket is shared with worker processes and accepted
    connections come without ``TCP_NODELAY``; small responses then wait for the client's
    delayed ACK (about 40 ms per keep-alive request). Setting it on every connection makes one
    and many workers behave alike."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol on the httptools parser, with ``TCP_NODELAY``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)


class NoDelayH11Protocol(H11Protocol):
    """The same on the pure-Python h11 parser."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)
