"""The HTTP protocol `latchkey serve` runs: TCP_NODELAY on every accepted connection."""

from __future__ import annotations

import socket

from latchkey.web.server import _no_delay


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def test_accepted_connections_get_tcp_nodelay() -> None:
    """A socket accepted from a listener shared with worker processes has Nagle's algorithm
    on; the protocol turns it off before the first response is written."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()),
    ):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            _no_delay(_Transport(accepted))  # type: ignore[arg-type]
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
