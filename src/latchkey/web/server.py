"""Running the app under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with ``TCP_NODELAY`` on every connection.

    With ``--workers N`` the listening socket is shared with worker processes and accepted
    connections come without ``TCP_NODELAY``; small responses then wait for the client's
    delayed ACK (about 40 ms per keep-alive request). Setting it here makes one and many
    workers behave alike.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
