"""A real HTTP key server for the guard tests, that can be told to fail in every way.

``KeyServer`` serves ``keys`` as a JWKS on 127.0.0.1 and, on command:

- ``hang()``: accept every request and answer none until ``release()`` (a hung process, a
  full accept queue behind a proxy): ``holding`` counts the requests held open;
- ``refuse()``: stop listening, so connections are refused, until ``listen()``;
- ``fail(status)``: answer that status (500 by default);
- ``garbage(body)``: answer 200 with a body that is not a usable JWKS;
- ``answer()``: back to normal.

``wait_for(n)`` blocks until the server has received ``n`` requests in all (the tests'
way to act on causes, never on elapsed time; its timeout only ends a broken test).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from latchkey import SigningKey

PATIENCE = 30.0  # seconds before a broken test gives up waiting for a cause


class KeyServer:
    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.cache_control: str | None = None  # sent as Cache-Control when set
        self.requests = 0
        self.holding = 0
        self._status = 200
        self._body: bytes | None = None  # garbage to send instead of the JWKS
        self._released = threading.Event()
        self._released.set()
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.listen()
        self.url = f"http://127.0.0.1:{self._port}/.well-known/jwks.json"

    # --- behaviour ---------------------------------------------------------------------------

    def answer(self) -> None:
        self._status, self._body = 200, None

    def fail(self, status: int = 500) -> None:
        self._status = status

    def garbage(self, body: bytes = b"<html>maintenance</html>") -> None:
        self._status, self._body = 200, body

    def hang(self) -> None:
        self._released.clear()

    def release(self) -> None:
        """Let every held request go (each answers as the server is told to by then)."""
        self._released.set()

    def refuse(self) -> None:
        self._stop_listening()

    def listen(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release()
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=PATIENCE)
            self._server = None

    # --- waiting for causes ------------------------------------------------------------------

    def wait_for(self, requests: int) -> None:
        """Return once ``requests`` requests in all have arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.requests >= requests, PATIENCE):
                raise AssertionError(f"the key server got {self.requests} of {requests} requests")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public.to_jwk() for key in self.keys]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._changed:
                    owner.requests += 1
                    owner.holding += 1
                    owner._changed.notify_all()
                try:
                    owner._released.wait(PATIENCE)
                finally:
                    with owner._changed:
                        owner.holding -= 1
                        owner._changed.notify_all()
                status, body = owner._status, owner._body
                if body is None:
                    body = json.dumps(owner.jwks()).encode() if status == 200 else b"oops"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    if owner.cache_control:
                        self.send_header("Cache-Control", owner.cache_control)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting: nothing to answer
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
