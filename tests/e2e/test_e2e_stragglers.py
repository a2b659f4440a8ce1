"""A refresh request that arrives late, after its retry and a further rotation, against a real
``latchkey serve``: refused, and the session lives on (docs/sessions.md "Stragglers")."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

SOCKET_TIMEOUT = 30.0


class HeldBackRequest:
    """``POST /auth/refresh`` sent over a raw socket but for the body's last byte, which
    :meth:`finish` sends later; the server has the request and waits for the rest."""

    def __init__(self, port: int, refresh_token: str) -> None:
        body = json.dumps({"refresh_token": refresh_token}).encode()
        head = (
            "POST /auth/refresh HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self._last = body[-1:]
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        self._sock.sendall(head + body[:-1])

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the last byte; the status and JSON body of the answer."""
        self._sock.sendall(self._last)
        chunks = []
        while chunk := self._sock.recv(65536):
            chunks.append(chunk)
        self._sock.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body)


def test_straggler_does_not_end_the_session(shared_latchkey, login) -> None:
    """T0's first request is held back; its retry rotates T0 → T1, then T1 → T2; then T0's
    first request completes: 401 invalid_grant, and T2 and its access token still work."""
    server = shared_latchkey.server
    with server.client() as client:
        pair = login(client, "writer")
        straggler = HeldBackRequest(server.port, pair["refresh_token"])
        try:
            retry = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert retry.status_code == 200, retry.text
            onward = client.post(
                "/auth/refresh", json={"refresh_token": retry.json()["refresh_token"]}
            )
            assert onward.status_code == 200, onward.text
            newest = onward.json()
        finally:
            status, body = straggler.finish()

        assert status == 401
        assert body["error"] == "invalid_grant"
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {newest['access_token']}"})
        assert me.status_code == 200, me.text
        after = client.post("/auth/refresh", json={"refresh_token": newest["refresh_token"]})
        assert after.status_code == 200, after.text
        sessions = client.get(
            "/auth/sessions",
            headers={"Authorization": f"Bearer {after.json()['access_token']}"},
        )
        assert sessions.status_code == 200
        assert any(s["current"] for s in sessions.json()["sessions"])


def test_held_back_request_reaches_the_server_before_it_finishes(shared_latchkey, login) -> None:
    """The reproduction is sound: a held-back request alone, once finished, is an ordinary
    refresh (the server kept it waiting, it did not drop it)."""
    server = shared_latchkey.server
    with server.client() as client:
        pair = login(client, "writer")
    request = HeldBackRequest(server.port, pair["refresh_token"])
    status, body = request.finish()
    assert status == 200, body
    assert body["refresh_token"] != pair["refresh_token"]
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        onward = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert onward.status_code == 200
